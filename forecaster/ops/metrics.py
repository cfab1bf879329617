"""The service's Prometheus metrics; ``ops.http`` serves them at /metrics.

Each service owns one ``Metrics`` with its own CollectorRegistry (plus the client's
process and platform collectors), so tests can run several side by side. Names follow
the Prometheus conventions: ``forecaster_`` prefix, base units (seconds, ratios),
``_total`` on counters, and only bounded labels; every labelled counter is created
with all its known label values, so PromQL finds the series before the first event.
Forecast quality is in ``ops.quality_metrics``.

>>> metrics = Metrics()
>>> metrics.ticks_received.inc(3)
>>> metrics.registry.get_sample_value("forecaster_ticks_received_total")
3.0
>>> metrics.registry.get_sample_value("forecaster_retrains_total", {"outcome": "failed"})
0.0
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.registry import Collector

from forecaster.config import Settings
from forecaster.core.engine import NAIVE
from forecaster.core.ticks import RejectReason
from forecaster.ops.collectors import counter_with_labels, nan_gauge
from forecaster.ops.coverage import IntervalMetrics
from forecaster.ops.quality import DEFAULT_HALFLIFE
from forecaster.ops.quality_metrics import QualityMetrics

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
CHECKPOINT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RETRAIN_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
FORECAST_KINDS = ("model", NAIVE)
RETRAIN_OUTCOMES = ("promoted", "rejected", "failed", "skipped", "shadowed")
SHADOW_VERDICTS = ("promoted", "rejected")
RETRAIN_TRIGGERS = ("manual", "bootstrap", "interval", "cron", "decay", "ticks")
PRODUCE_ERROR_KINDS = ("transient", "permanent")


class Metrics:
    """The service's metrics, registered in one registry."""

    def __init__(
        self,
        quality_halflife: float = DEFAULT_HALFLIFE,
        quality_series: Sequence[str] = (),
        interval_coverage: float = Settings.interval_coverage,
    ) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
            self.registry.register(_Delegate(collector))
        self._define_ingestion()
        self._define_speed()
        self._define_kafka()
        self._define_model()
        self._define_shadow()
        self._define_checkpoints()
        self.forecast_quality = QualityMetrics(self.registry, quality_halflife, quality_series)
        self.forecast_intervals = IntervalMetrics(
            self.registry, interval_coverage, quality_halflife, quality_series
        )

    def _define_ingestion(self) -> None:
        r = self.registry
        self.ticks_received = Counter(
            "forecaster_ticks_received", "Tick messages received from the source", registry=r
        )
        self.ticks_accepted = Counter(
            "forecaster_ticks_accepted", "Ticks accepted and stepped", registry=r
        )
        self.ticks_rejected = counter_with_labels(
            "forecaster_ticks_rejected",
            "Ticks rejected to the dead-letter path, by rule broken",
            "reason",
            [reason.value for reason in RejectReason],
            r,
        )
        self.forecasts_emitted = counter_with_labels(
            "forecaster_forecasts_emitted",
            "Forecasts written, by kind (model or naive)",
            "kind",
            FORECAST_KINDS,
            r,
        )
        self.forecasts_nonfinite = Counter(
            "forecaster_forecasts_nonfinite",
            "Model forecasts that were not finite and fell back to the naive forecast",
            registry=r,
        )
        self.batch_size = Histogram(
            "forecaster_batch_size_ticks",
            "Ticks per micro-batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.active_series = Gauge(
            "forecaster_active_series", "Series with state held by this instance", registry=r
        )
        self.series_created = Counter(
            "forecaster_series_created", "Series seen for the first time", registry=r
        )
        self.series_evicted = Counter(
            "forecaster_series_evicted", "Idle series whose state was dropped", registry=r
        )

    def _define_speed(self) -> None:
        self.step_seconds = Histogram(
            "forecaster_engine_step_seconds",
            "Time the engine takes to step one micro-batch",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tick_to_forecast_seconds = Histogram(
            "forecaster_tick_to_forecast_seconds",
            "Tick in to forecast out: from a batch's arrival to its sink acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _define_kafka(self) -> None:
        r = self.registry
        self.kafka_consumer_lag = Gauge(
            "forecaster_kafka_consumer_lag_messages",
            "Messages behind the end of each assigned input partition",
            ["partition"],
            registry=r,
        )
        self.kafka_commit_seconds = Histogram(
            "forecaster_kafka_commit_seconds",
            "Time to commit input offsets",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.kafka_produce_errors = counter_with_labels(
            "forecaster_kafka_produce_errors",
            "Records the producer failed to deliver: transient (the batch is retried) or "
            "permanent (refused for good, dropped)",
            "kind",
            PRODUCE_ERROR_KINDS,
            r,
        )
        self.kafka_rejoins = Counter(
            "forecaster_kafka_rejoins",
            "Times the consumer joined its group again: a rebalance it saw begin never assigned",
            registry=r,
        )
        self.transactions_committed = Counter(
            "forecaster_kafka_transactions_committed",
            "Kafka transactions committed (exactly once: one per input partition of a batch)",
            registry=r,
        )
        self.transactions_aborted = Counter(
            "forecaster_kafka_transactions_aborted",
            "Kafka transactions aborted (exactly once): their partitions go back to the last "
            "committed point",
            registry=r,
        )
        self.transaction_commit_seconds = Histogram(
            "forecaster_kafka_transaction_commit_seconds",
            "Time to commit a batch's transactions, input offsets included (exactly once)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def _define_model(self) -> None:
        r = self.registry
        self.model_info = Info("forecaster_model", "The model version serving", registry=r)
        self.model_info.info({"version": NAIVE, "cell": "none"})
        self._model_loaded_at = math.nan
        self.model_age = Gauge(
            "forecaster_model_age_seconds",
            "Seconds since the serving model was swapped in (NaN while naive)",
            registry=r,
        )
        self.model_age.set_function(lambda: time.time() - self._model_loaded_at)
        self.swap_rewarm_seconds = Histogram(
            "forecaster_swap_rewarm_seconds",
            "Wall time of a model swap, from its start to the new model serving",
            buckets=CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.swap_pause_seconds = Histogram(
            "forecaster_swap_pause_seconds",
            "Time a model swap held the serving loop at one batch boundary",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retrains = counter_with_labels(
            "forecaster_retrains", "Retraining runs, by outcome", "outcome", RETRAIN_OUTCOMES, r
        )
        self.retrain_seconds = Histogram(
            "forecaster_retrain_duration_seconds",
            "Wall time of a retraining run, data collection to outcome",
            buckets=RETRAIN_BUCKETS,
            registry=r,
        )
        self.retrain_training_loss = nan_gauge(
            "forecaster_retrain_training_loss", "Training loss of the last retraining run", r
        )
        self.retrain_validation_loss = nan_gauge(
            "forecaster_retrain_validation_loss", "Validation loss of the last retraining run", r
        )
        self.retrain_triggers = counter_with_labels(
            "forecaster_retrain_triggers",
            "Retraining runs started, by what started them (decay: the serving model's live "
            "quality fell)",
            "trigger",
            RETRAIN_TRIGGERS,
            r,
        )
        self.retrain_live_mase = nan_gauge(
            "forecaster_retrain_live_mase_ratio",
            "The serving model's MASE over its last decay_window scored forecasts",
            r,
        )
        self.retrain_last_run = Info(
            "forecaster_retrain_last_run",
            "The last retraining run: its trigger, outcome and candidate version ('' if none)",
            registry=r,
        )
        self.retrain_holdout_mae = Gauge(
            "forecaster_retrain_holdout_mae",
            "MAE on the gate's holdout of the last candidate judged, of the model serving then "
            "and of naive (standardised returns; NaN before, and for serving while naive)",
            ["model"],
            registry=r,
        )
        for model in ("candidate", "serving", "naive"):
            self.retrain_holdout_mae.labels(model).set(math.nan)

    def _define_shadow(self) -> None:
        r = self.registry
        self.shadow_active = Gauge(
            "forecaster_shadow_active", "1 while a candidate is in shadow, else 0", registry=r
        )
        self.shadow_points = Gauge(
            "forecaster_shadow_points",
            "Forecasts of the candidate in shadow scored so far (paired with the serving "
            "model's on the same ticks)",
            registry=r,
        )
        self.shadow_mase = Gauge(
            "forecaster_shadow_live_mase_ratio",
            "Live MASE on the ticks scored in shadow, of the candidate and of the serving model "
            "(NaN while no candidate is in shadow)",
            ["model"],
            registry=r,
        )
        for model in ("candidate", "serving"):
            self.shadow_mase.labels(model).set(math.nan)
        self.shadow_verdicts = counter_with_labels(
            "forecaster_shadow_verdicts", "Shadow verdicts, by outcome", "outcome",
            SHADOW_VERDICTS, r,
        )  # fmt: skip

    def _define_checkpoints(self) -> None:
        r = self.registry
        self._checkpoint_done_at = math.nan
        self.checkpoint_age = Gauge(
            "forecaster_checkpoint_age_seconds",
            "Seconds since the last successful state checkpoint (NaN before the first)",
            registry=r,
        )
        self.checkpoint_age.set_function(lambda: time.time() - self._checkpoint_done_at)
        self.checkpoint_seconds = Histogram(
            "forecaster_checkpoint_duration_seconds",
            "Time to write one state checkpoint",
            buckets=CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.checkpoint_failures = Counter(
            "forecaster_checkpoint_failures", "State checkpoints that failed", registry=r
        )
        self.checkpoint_refused = counter_with_labels(
            "forecaster_checkpoint_refused",
            "Checkpoints refused at restore, by reason (unreadable, corrupt, incompatible)",
            "reason",
            ["unreadable", "corrupt", "incompatible"],
            r,
        )
        self.restoring_partitions = Gauge(
            "forecaster_state_restoring_partitions",
            "Assigned partitions whose state is being restored (their ticks wait; others flow)",
            registry=r,
        )
        self.restore_seconds = Histogram(
            "forecaster_state_restore_duration_seconds",
            "Time from a partition's assignment to its state restored (or found to be none)",
            buckets=CHECKPOINT_BUCKETS,
            registry=r,
        )

    def model_serving(self, version: str, cell: str) -> None:
        """Record that ``version`` serves from now on: its info labels, and its age from 0."""
        self.model_info.info({"version": version, "cell": cell})
        self._model_loaded_at = time.time()

    def checkpoint_completed(self, duration_seconds: float) -> None:
        """Record a successful checkpoint: its duration, and the checkpoint age from 0."""
        self.checkpoint_seconds.observe(duration_seconds)
        self._checkpoint_done_at = time.time()


class _Delegate(Collector):
    """Registers a default collector in another registry without re-creating it."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Any]:
        return self.collector.collect()  # type: ignore[no-any-return]
