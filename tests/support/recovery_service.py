"""The Kafka service the kill -9 test kills: `forecaster run`'s assembly (``service.serve``)
around an engine serving a random-weight NumPy model, so that no TensorFlow is loaded;
``run_with_shadow`` adds a Retrainer whose candidates all go into shadow and stay there.

The test starts it with ``multiprocessing``'s forkserver, this module preloaded: each
start is a fork of a process that has imported everything already, not a new interpreter.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from forecaster.config import Settings
from forecaster.core.engine import Engine
from forecaster.model.spec import ModelSpec
from forecaster.params import engine_params, feature_params, retrain_policy
from forecaster.retraining.coordinator import Retrainer
from forecaster.retraining.feed import StepFeed
from forecaster.retraining.registry import Registry
from forecaster.retraining.trainer import NamedFit
from forecaster.service import metrics_of, serve
from tests.support.models import random_stepper

SPEC = ModelSpec(cell="lstm", layers=2, units=8)


def serving_engine(settings: Settings) -> Engine:
    return Engine(engine_params(settings), model=random_stepper(SPEC, seed=11))


def run(settings: Settings, log_path: Path, shadow: bool = False) -> None:
    """Serve until killed, or until SIGTERM: then finish the batch in hand and exit 0."""
    if shadow:
        run_with_shadow(settings, log_path)
        return
    _log_to(log_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    serve(settings, serving_engine(settings), None, stop, metrics_of(settings))


def run_with_shadow(settings: Settings, log_path: Path) -> None:
    """``run``, retraining every ``retrain_every_ticks`` warm steps in a child process: its
    candidate always forecasts the last price, passes the gate (give it a lenient
    ``retrain_margin``) and, while ``shadow_min_points`` are not reached, stays in shadow."""
    _log_to(log_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    policy, metrics = retrain_policy(settings), metrics_of(settings)
    feed = StepFeed(policy.bootstrap_steps, first_model=False)
    engine = Engine(engine_params(settings), model=random_stepper(SPEC, seed=11), recorder=feed)
    fit = NamedFit("tests.support.training_fits:constant", {"value": 0.0, "units": 8})
    retrainer = Retrainer(engine, feed, fit, policy, feature_params(settings),
                          registry=Registry(Path(settings.model_dir)), metrics=metrics)  # fmt: skip
    serve(settings, engine, retrainer, stop, metrics)


def _log_to(log_path: Path) -> None:
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        force=True,
    )
