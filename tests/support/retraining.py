"""Retrainers for tests: inline (replay) or live, over a fresh engine with small settings,
and the pipeline that replays a tick file through one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from forecaster.config import Settings
from forecaster.core.engine import Engine
from forecaster.core.features import FeatureParams
from forecaster.io.files import CsvSource, JsonLinesSink, open_output
from forecaster.model.stepper import Stepper
from forecaster.ops.metrics import Metrics
from forecaster.params import engine_params
from forecaster.pipeline import Pipeline
from forecaster.retraining.coordinator import Retrainer, RetrainPolicy
from forecaster.retraining.dataset import Sequence
from forecaster.retraining.events import EventSink
from forecaster.retraining.feed import StepFeed
from forecaster.retraining.registry import Registry
from forecaster.retraining.shadow import ShadowPolicy
from forecaster.retraining.trainer import TrainedModel

SMALL = {"min_history": 8, "ring_length": 512, "max_batch": 250}
Fit = Callable[[list[Sequence]], TrainedModel]


def pipeline_over(path: Path, retrainer: Retrainer, out: Path) -> Pipeline:
    sink = JsonLinesSink(open_output(str(out)), open_output(str(out.with_suffix(".rejects"))))
    source = CsvSource(path, SMALL["max_batch"])
    return Pipeline(source, retrainer.engine, sink, retrainer.metrics, updates=retrainer)


def fixed_fit(model: Stepper) -> Fit:
    return lambda sequences: TrainedModel(model, {"series": len(sequences)})


def retrainer_for(serving: Stepper | None, fit: Fit, registry: Registry | None = None,
                  warm_on: Path | None = None, background: bool = False,
                  *, events: EventSink | None = None, **policy: object) -> Retrainer:  # fmt: skip
    """The Retrainer (inline unless ``background``) of a fresh engine serving ``serving``,
    which records into the Retrainer's feed; ``warm_on``: its history rings hold all of
    those ticks; ``events`` hears what it does. Candidates are promoted on the gate alone
    unless ``shadow`` says otherwise (tests/retraining/test_shadow.py)."""
    policy.setdefault("shadow", ShadowPolicy(mode="gate"))
    settings = RetrainPolicy(**policy)  # type: ignore[arg-type]
    feed = StepFeed(settings.bootstrap_steps, first_model=serving is None)
    engine = Engine(engine_params(Settings(**SMALL)), serving, recorder=feed)  # type: ignore[arg-type]
    if warm_on is not None:
        engine.process(CsvSource(warm_on, 100_000).poll(0.0).parse().ticks)  # type: ignore[union-attr]
    features = FeatureParams(min_history=SMALL["min_history"])
    return Retrainer(engine, feed, fit, settings, features, registry=registry, metrics=Metrics(),
                     background=background, events=events)  # fmt: skip
