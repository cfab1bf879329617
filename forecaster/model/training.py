"""Fit a Keras model on windows of warm steps; deterministic for a given seed and data.

Imports TensorFlow. The loss skips the first ``burn_in`` steps of every window, where
the recurrent state (which starts from zero) has not yet seen enough of the series.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from forecaster.errors import ConfigError, TrainingError
from forecaster.model import keras_model
from forecaster.model.spec import ModelSpec
from forecaster.retraining.dataset import Sequence, Windows, make_windows


@dataclass(frozen=True)
class TrainParams:
    window: int = 64
    stride: int = 32
    burn_in: int = 8
    epochs: int = 30
    batch_size: int = 16  # small: a few thousand steps make only a few hundred windows
    learning_rate: float = 2e-3
    validation_fraction: float = 0.2
    patience: int = 4
    seed: int = 0
    min_windows: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.burn_in < self.window:
            raise ConfigError(f"burn_in must be in [0, window), got {self.burn_in}")
        if self.stride < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("stride, epochs and batch_size must be >= 1")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError("validation_fraction must be in (0, 1)")


@dataclass(frozen=True)
class TrainReport:
    train_windows: int
    valid_windows: int
    steps: int
    epochs_run: int
    train_loss: float
    valid_loss: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    sequences: list[Sequence],
    spec: ModelSpec,
    params: TrainParams,
    clip: float,
    verbose: int = 0,
) -> tuple[keras.Model, TrainReport]:
    """Train a fresh model on ``sequences``; raises TrainingError when it cannot."""
    windows = make_windows(
        sequences, params.window, params.stride, params.validation_fraction, clip
    )
    if len(windows.y_train) < params.min_windows or len(windows.y_valid) == 0:
        raise TrainingError(
            f"too little history: {len(windows.y_train)} training windows of {params.window} "
            f"steps (need {params.min_windows}) and {len(windows.y_valid)} validation windows"
        )
    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()
    model = keras_model.build(spec, seed=params.seed)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="mse")
    history = model.fit(
        windows.x_train,
        windows.y_train[..., None],
        sample_weight=_weights(windows.y_train.shape, params.burn_in),
        validation_data=(
            windows.x_valid,
            windows.y_valid[..., None],
            _weights(windows.y_valid.shape, params.burn_in),
        ),
        epochs=params.epochs,
        batch_size=params.batch_size,
        shuffle=True,
        verbose=verbose,
        callbacks=[
            keras.callbacks.EarlyStopping(
                patience=params.patience, restore_best_weights=True, monitor="val_loss"
            ),
            keras.callbacks.TerminateOnNaN(),
        ],
    )
    return model, _report(windows, history.history)


def _weights(shape: tuple[int, ...], burn_in: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    weights = np.ones(shape, np.float32)
    weights[:, :burn_in] = 0.0
    return weights


def _report(windows: Windows, history: dict[str, list[float]]) -> TrainReport:
    valid = history.get("val_loss", [])
    train_loss = history.get("loss", [])
    if not valid or not all(math.isfinite(v) for v in train_loss + valid):
        raise TrainingError(f"training diverged (loss {train_loss[-1:] or 'none'})")
    best = int(np.argmin(valid))
    return TrainReport(
        train_windows=len(windows.y_train),
        valid_windows=len(windows.y_valid),
        steps=windows.steps,
        epochs_run=len(valid),
        train_loss=float(train_loss[best]),
        valid_loss=float(valid[best]),
    )
