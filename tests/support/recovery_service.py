"""The Kafka service the kill -9 test kills: `forecaster run`'s assembly (``service.serve``)
around an engine serving a random-weight NumPy model, so that no TensorFlow is loaded.

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
from forecaster.params import engine_params
from forecaster.service import metrics_of, serve
from tests.support.models import random_stepper

SPEC = ModelSpec(cell="lstm", layers=2, units=8)


def serving_engine(settings: Settings) -> Engine:
    return Engine(engine_params(settings), model=random_stepper(SPEC, seed=11))


def run(settings: Settings, log_path: Path) -> None:
    """Serve until killed, or until SIGTERM: then finish the batch in hand and exit 0."""
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        force=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    serve(settings, serving_engine(settings), None, stop, metrics_of(settings))
