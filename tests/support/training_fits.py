"""Fits a training process can run by name (``NamedFit``), without TensorFlow.

Their parameters are JSON; each one stands for one way a live training can go.
"""

import json
import os
import signal
import time
from pathlib import Path

from forecaster.model.spec import ModelSpec
from forecaster.retraining.dataset import Sequence
from forecaster.retraining.trainer import TrainedModel
from tests.support.models import constant_stepper
from tests.support.structure import even_stepper


def constant(sequences: list[Sequence], value: float, units: int) -> TrainedModel:
    """A model that always forecasts ``value``; its details name the process that fitted it."""
    stepper = constant_stepper(ModelSpec(cell="gru", layers=1, units=units), value, "constant")
    return TrainedModel(stepper, {"fitted_by_pid": os.getpid(), "series": len(sequences)})


def even(sequences: list[Sequence], strength: float) -> TrainedModel:
    """The model of tests/support/structure.py's stream (``even_stepper``)."""
    return TrainedModel(even_stepper(strength, "even"), {"series": len(sequences)})


def hang(sequences: list[Sequence], started: str, ignore_sigterm: bool) -> TrainedModel:
    """Touch the file ``started``, then never finish (deaf to SIGTERM if asked)."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(started).touch()
    while True:
        time.sleep(1.0)


def timed(sequences: list[Sequence], runs: str, proceed: str, units: int) -> TrainedModel:
    """Record when the fit starts and ends (``runs/<pid>.json``), waiting in between for the
    file ``proceed`` to exist; the model always forecasts 0."""
    record = Path(runs) / f"{os.getpid()}.json"
    started = time.time()
    record.write_text(json.dumps({"start": started}))
    while not Path(proceed).exists():
        time.sleep(0.05)
    record.write_text(json.dumps({"start": started, "end": time.time()}))
    return constant(sequences, 0.0, units)
