"""Metrics: what a pipeline run counts, the pre-created series, the figures not known yet."""

import doctest
import io
import math
import threading

from forecaster.config import Settings
from forecaster.core.engine import Engine, EngineParams
from forecaster.core.ticks import RejectReason
from forecaster.io.files import CsvSource, JsonLinesSink
from forecaster.model.spec import ModelSpec
from forecaster.ops import metrics as metrics_module
from forecaster.ops.metrics import FORECAST_KINDS, RETRAIN_OUTCOMES, Metrics
from forecaster.pipeline import Pipeline
from forecaster.service import Service
from tests.support.metrics import QUALITY_FIGURES, run_pipeline, sample
from tests.support.models import random_stepper
from tests.support.replay_input import ReplayInput


def test_docstring_examples() -> None:
    assert doctest.testmod(metrics_module).failed == 0


def test_labelled_counters_exist_before_the_first_event() -> None:
    metrics = Metrics()
    for reason in RejectReason:
        assert sample(metrics, "forecaster_ticks_rejected_total", reason=reason.value) == 0
    for kind in FORECAST_KINDS:
        assert sample(metrics, "forecaster_forecasts_emitted_total", kind=kind) == 0
    for outcome in RETRAIN_OUTCOMES:
        assert sample(metrics, "forecaster_retrains_total", outcome=outcome) == 0


def test_unknown_figures_read_nan_not_zero() -> None:
    metrics = Metrics()
    unknown = [
        "forecaster_model_age_seconds",
        "forecaster_checkpoint_age_seconds",
        "forecaster_retrain_training_loss",
        "forecaster_retrain_validation_loss",
        *(f"forecaster_quality_{figure}_ratio" for figure in QUALITY_FIGURES),
    ]
    for name in unknown:
        assert math.isnan(sample(metrics, name)), name


def test_model_serving_sets_info_and_starts_the_age() -> None:
    metrics = Metrics()
    assert sample(metrics, "forecaster_model_info", version="naive", cell="none") == 1
    metrics.model_serving("gru-abc", "gru")
    assert sample(metrics, "forecaster_model_info", version="gru-abc", cell="gru") == 1
    naive = {"version": "naive", "cell": "none"}
    assert metrics.registry.get_sample_value("forecaster_model_info", naive) is None
    assert 0 <= sample(metrics, "forecaster_model_age_seconds") < 60


def test_checkpoint_completed_observes_and_restarts_the_age() -> None:
    metrics = Metrics()
    metrics.checkpoint_completed(0.3)
    assert sample(metrics, "forecaster_checkpoint_duration_seconds_count") == 1
    assert 0 <= sample(metrics, "forecaster_checkpoint_age_seconds") < 60


def test_a_run_is_counted_as_it_happened(replay: ReplayInput) -> None:
    metrics = Metrics(quality_series=["AR-GAMMA"])
    run_pipeline(replay, metrics)
    received = sample(metrics, "forecaster_ticks_received_total")
    accepted = sample(metrics, "forecaster_ticks_accepted_total")
    rejected = {
        reason.value: sample(metrics, "forecaster_ticks_rejected_total", reason=reason.value)
        for reason in RejectReason
    }
    emitted = [
        sample(metrics, "forecaster_forecasts_emitted_total", kind=k) for k in FORECAST_KINDS
    ]
    assert received == replay.received
    assert accepted + sum(rejected.values()) == received
    assert {reason: n for reason, n in rejected.items() if n} == replay.rejected
    assert sum(emitted) == accepted == replay.accepted
    assert sample(metrics, "forecaster_batch_size_ticks_sum") == received
    assert sample(metrics, "forecaster_active_series") == len(replay.series)
    assert sample(metrics, "forecaster_series_created_total") == len(replay.series)
    batches = sample(metrics, "forecaster_batch_size_ticks_count")
    assert sample(metrics, "forecaster_engine_step_seconds_count") == batches
    assert sample(metrics, "forecaster_tick_to_forecast_seconds_count") == batches


def test_service_reports_a_model_loaded_at_start(replay: ReplayInput) -> None:
    engine = Engine(EngineParams(), random_stepper(ModelSpec(layers=1, units=4)))
    sink = JsonLinesSink(io.BytesIO(), io.BytesIO())
    metrics = Metrics()
    pipeline = Pipeline(CsvSource(replay.path, max_batch=50), engine, sink, metrics)
    stop = threading.Event()
    stop.set()
    Service(Settings(metrics_port=0), pipeline, stop).run()
    assert sample(metrics, "forecaster_model_info", version="test-v1", cell="lstm") == 1
