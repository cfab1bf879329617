"""Reading a Metrics registry, and a pipeline run that fills one."""

import io
import threading

from forecaster.core.engine import Engine, EngineParams
from forecaster.io.files import CsvSource, JsonLinesSink
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import Pipeline
from tests.support.models import random_stepper
from tests.support.replay_input import ReplayInput

QUALITY_FIGURES = ("mae", "rmse", "mase", "directional_accuracy")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def run_pipeline(replay: ReplayInput, metrics: Metrics) -> Pipeline:
    engine = Engine(EngineParams(), random_stepper(ModelSpec(layers=1, units=4)))
    sink = JsonLinesSink(io.BytesIO(), io.BytesIO())
    pipeline = Pipeline(CsvSource(replay.path, max_batch=50), engine, sink, metrics)
    pipeline.run(threading.Event())
    return pipeline
