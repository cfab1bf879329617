"""Fits a training process can run by name (``NamedFit``), without TensorFlow.

Their parameters are JSON; each one stands for one way a live training can go.
"""

import os
import signal
import time
from pathlib import Path

from forecaster.dataset import Sequence
from forecaster.model.spec import ModelSpec
from forecaster.trainer import TrainedModel
from tests.support_models import constant_stepper


def constant(sequences: list[Sequence], value: float, units: int) -> TrainedModel:
    """A model that always forecasts ``value``; its details name the process that fitted it."""
    stepper = constant_stepper(ModelSpec(cell="gru", layers=1, units=units), value, "constant")
    return TrainedModel(stepper, {"fitted_by_pid": os.getpid(), "series": len(sequences)})


def hang(sequences: list[Sequence], started: str, ignore_sigterm: bool) -> TrainedModel:
    """Touch the file ``started``, then never finish (deaf to SIGTERM if asked)."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(started).touch()
    while True:
        time.sleep(1.0)
