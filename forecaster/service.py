"""Assemble the parts from Settings and run them: the service, a replay, a training run."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from forecaster.backoff import Backoff
from forecaster.config import Settings
from forecaster.core.engine import Engine
from forecaster.io.base import Sink, Source, Transactions
from forecaster.io.files import CsvSource, JsonLinesSink, open_output
from forecaster.ops.counting import Totals
from forecaster.ops.http import HttpServer, http_app
from forecaster.ops.metrics import Metrics
from forecaster.params import (
    engine_params,
    feature_params,
    input_limits,
    model_spec,
    retrain_policy,
)
from forecaster.pipeline import Pipeline
from forecaster.retraining.coordinator import Retrainer
from forecaster.retraining.events import EventSink, EventWriter
from forecaster.retraining.feed import StepFeed
from forecaster.retraining.registry import Registry
from forecaster.retraining.trainer import TrainedModel, Trainer
from forecaster.runtime import serving_runtime
from forecaster.state.checkpoint import Checkpoints, CheckpointStore
from forecaster.state.partitions import PartitionStates

log = logging.getLogger(__name__)


def registry_of(settings: Settings) -> Registry | None:
    return Registry(Path(settings.model_dir)) if settings.model_dir else None


def trainer_of(settings: Settings) -> Trainer:
    return Trainer(
        spec=model_spec(settings),
        features=feature_params(settings),
        sequence_length=settings.train_window,
        epochs=settings.train_epochs,
        seed=settings.seed,
        threads=settings.retrain_threads,
    )


def metrics_of(settings: Settings) -> Metrics:
    """The metrics every part of one service or replay reports into."""
    return Metrics(settings.quality_halflife, settings.quality_series(), settings.interval_coverage)


def build_engine(
    settings: Settings,
    metrics: Metrics,
    background_training: bool,
    events: EventSink | None = None,
) -> tuple[Engine, Retrainer]:
    """The engine serving the promoted model (naive if none), and the Retrainer keeping it
    fresh: training in a child process live, inline at data-clock points in a replay. The
    engine records its committed steps into the Retrainer's feed; the Retrainer tells
    ``events`` what it does (``forecaster.retraining.events``)."""
    registry = registry_of(settings)
    artifact = registry.load_serving(feature_params(settings)) if registry is not None else None
    serving = artifact.stepper if artifact is not None else None
    if serving is not None:
        log.info("serving model %s from %s", serving.version, settings.model_dir)
    else:
        log.info("no trained model: forecasts are naive until %d warm steps train one",
                 settings.bootstrap_steps)  # fmt: skip
    policy = retrain_policy(settings)
    feed = StepFeed(policy.bootstrap_steps, first_model=serving is None)
    params = replace(engine_params(settings), rewarm_in_background=background_training)
    engine = Engine(params, serving, recorder=feed)
    engine.load_kernels()
    retrainer = Retrainer(
        engine,
        feed,
        trainer_of(settings).named_fit(),
        policy,
        feature_params(settings),
        registry=registry,
        metrics=metrics,
        background=background_training,
        events=events,
    )
    return engine, retrainer


@dataclass
class Service:
    """A running service: pipeline plus HTTP endpoints, stopped by SIGTERM/SIGINT."""

    settings: Settings
    pipeline: Pipeline
    stop: threading.Event
    retrain: Callable[[], str] | None = None  # POST /retrain

    def ready(self) -> tuple[bool, str]:
        if not self.pipeline.source.connected():
            return False, "source not connected"
        if failure := self.pipeline.delivery_failure:
            return False, f"delivery failing, retrying with backoff: {failure}"
        states = self.pipeline.states
        if states is not None and (restoring := states.restoring()):
            return False, f"restoring the state of {restoring} partitions"
        if self.pipeline.engine.model is None:
            return False, "no model loaded yet (serving naive forecasts)"
        return True, f"serving {self.pipeline.engine.model.version}"

    def run(self) -> Totals:
        if (model := self.pipeline.engine.model) is not None:  # loaded from the registry
            self.pipeline.metrics.model_serving(model.version, model.spec.cell)
        server = None
        if self.settings.metrics_port:
            app = http_app(self.pipeline.metrics.registry, self.ready, self.retrain,
                           admin_token=self.settings.admin_token)  # fmt: skip
            server = HttpServer(app, self.settings.metrics_host, self.settings.metrics_port).start()
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host, server.port)
        try:
            self.pipeline.run(self.stop)
            # The file ran out (no loop): keep serving the endpoints until told to stop.
            while not self.stop.wait(1.0):
                pass
        finally:
            self.pipeline.engine.stop_background()  # a swap's or shadow's re-warm thread
            self.pipeline.sink.close()
            self.pipeline.source.close()  # revokes every partition: their last checkpoints
            if self.pipeline.states is not None:
                self.pipeline.states.close()
            if server is not None:
                server.stop()
            totals = self.pipeline.totals
            log.info("stopped after %d ticks: %d forecasts, %d dead letters",
                     totals.received, totals.accepted, totals.rejected)  # fmt: skip
        return self.pipeline.totals


def run_service(settings: Settings) -> Totals:
    """`forecaster run`: consume Kafka, or replay the tick file at a live pace, until stopped."""
    stop = _stop_on_signals()
    metrics = metrics_of(settings)
    engine, retrainer = build_engine(settings, metrics, background_training=True)
    return serve(settings, engine, retrainer, stop, metrics)


def serve(
    settings: Settings,
    engine: Engine,
    retrainer: Retrainer | None,
    stop: threading.Event,
    metrics: Metrics,
) -> Totals:
    """The service around a built ``engine``, until ``stop`` is set (run_service's second half)."""
    source, sink, states = transport(settings, engine, metrics)
    retry = Backoff(longest=settings.reconnect_backoff_max_ms / 1000)
    transactions = getattr(sink, "transactions", None)  # exactly once (transport)
    pipeline = Pipeline(source, engine, sink, metrics, states=states, updates=retrainer,
                        retry=retry, transactions=transactions,
                        overlap=settings.overlap_delivery)  # fmt: skip
    with serving_runtime():
        if retrainer is None:
            return Service(settings, pipeline, stop).run()
        retrainer.start()
        try:
            return Service(settings, pipeline, stop, retrainer.request).run()
        finally:
            retrainer.stop()


def checkpoints_of(
    settings: Settings, metrics: Metrics, transactions: Transactions | None = None
) -> Checkpoints | None:
    """The input topic's checkpoints: its changelog topic (written in ``transactions``,
    exactly once), or under ``state_dir`` if set."""
    if settings.state_store == "kafka":
        from forecaster.state.changelog import ChangelogStore  # kafka-python: only when used

        return ChangelogStore(settings, engine_params(settings), metrics, transactions)
    if not settings.state_dir:
        return None
    root = Path(settings.state_dir) / settings.input_topic
    return CheckpointStore(root, engine_params(settings), metrics)


def transport(
    settings: Settings, engine: Engine, metrics: Metrics
) -> tuple[Source[Any], Sink, PartitionStates | None]:
    """Kafka topics when bootstrap_servers is set (with the partitions' series state), else
    the tick file and JSON lines. Exactly once, the sink is transactional and the
    pipeline finds its transactions on it (``sink.transactions``)."""
    if settings.bootstrap_servers:
        from forecaster.io.kafka import KafkaSink, KafkaSource  # a file replay never needs them

        if settings.exactly_once():
            return exactly_once_transport(settings, engine, metrics)
        states = PartitionStates(
            engine, checkpoints_of(settings, metrics), metrics, settings.checkpoint_interval_s
        )
        return (
            KafkaSource(settings, metrics, partitions=states),
            KafkaSink(settings, metrics),
            states,
        )
    file = csv_source(settings, settings.input_path(), settings.rate, settings.loop)
    sink = json_lines_sink(settings, settings.forecasts_out, settings.dead_letters_out)
    return file, sink, None


def exactly_once_transport(
    settings: Settings, engine: Engine, metrics: Metrics
) -> tuple[Source[Any], Sink, PartitionStates]:
    """Kafka source and sink sharing one set of transactions with the changelog store."""
    from forecaster.io.kafka import KafkaSource, KafkaTransactions, TransactionalSink

    transactions = KafkaTransactions(settings, metrics)
    checkpoints = checkpoints_of(settings, metrics, transactions)
    states = PartitionStates(engine, checkpoints, metrics, settings.checkpoint_interval_s,
                             replay_committed=True)  # fmt: skip
    source = KafkaSource(settings, metrics, partitions=states, transactions=transactions)
    transactions.group_metadata = source.group_metadata
    return source, TransactionalSink(settings, transactions), states


def csv_source(settings: Settings, path: Path, rate: float = 0.0, loop: bool = False) -> CsvSource:
    """A tick CSV read in batches of ``max_batch`` and checked against the input limits."""
    return CsvSource(path, settings.max_batch, rate, loop, limits=input_limits(settings))


def json_lines_sink(settings: Settings, forecasts: str, dead_letters: str) -> JsonLinesSink:
    """Forecasts and dead letters (keeping ``max_message_bytes`` of each) as JSON lines."""
    return JsonLinesSink(
        open_output(forecasts), open_output(dead_letters), keep_bytes=settings.max_message_bytes
    )


def replay(
    settings: Settings,
    input_path: Path,
    out: Path,
    rejects: str,
    progress: Callable[[Totals], None] | None = None,
    *,
    events_out: Path | None = None,
) -> Totals:
    """`forecaster replay`: the same engine over a whole file, as fast as it goes.

    ``progress`` is called with the totals so far after every batch (the backtest's bar);
    ``events_out`` receives the retraining events as JSON lines (the backtest's markers).
    """
    metrics = metrics_of(settings)
    events = events_out.open("w", encoding="utf-8") if events_out is not None else None
    engine, retrainer = build_engine(settings, metrics, background_training=False,
                                     events=EventWriter(events) if events else None)  # fmt: skip
    source = csv_source(settings, input_path)
    sink = json_lines_sink(settings, str(out), rejects)
    pipeline = Pipeline(source, engine, sink, metrics, updates=retrainer)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        with serving_runtime():
            while pipeline.step():
                if progress is not None:
                    progress(pipeline.totals)
    finally:
        sink.close()
        if events is not None:
            events.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    totals = pipeline.totals
    # CPU time next to wall time: on a shared machine the wall time includes waits for a core.
    log.info(
        "replayed %d ticks (%d accepted, %d rejected) of %d series (%d held at the end) in "
        "%.2f s (%.0f ticks/s; %.2f s of CPU, %.0f ticks per CPU second)",
        totals.received, totals.accepted, totals.rejected, totals.series_created,
        len(engine.table), elapsed, totals.received / max(elapsed, 1e-9), cpu,
        totals.received / max(cpu, 1e-9),
    )  # fmt: skip
    return totals


def train(settings: Settings, input_path: Path, verbose: int = 1) -> TrainedModel:
    """`forecaster train`: compute features over a tick file, fit, and (with a model_dir)
    save and promote a version."""
    from forecaster.retraining.dataset import OFFLINE_MAX_STEPS, HistoryRecorder

    recorder = HistoryRecorder(OFFLINE_MAX_STEPS)
    engine = Engine(engine_params(settings), recorder=recorder)
    source = csv_source(settings, input_path)
    while (batch := source.poll(0.0)) is not None:
        engine.process(batch.parse().ticks)
        engine.commit()
    log.info("features of %d warm steps over %d series", recorder.steps, len(engine.table))
    if recorder.held < recorder.steps:
        log.warning("training on the newest %d of them", recorder.held)
    trained = trainer_of(settings).fit(recorder.sequences(), verbose)
    if (registry := registry_of(settings)) is not None:
        version = registry.save(
            trained.stepper, feature_params(settings), trained.details, trained.keras_model
        )
        registry.promote(version)
    return trained


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the batch in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
