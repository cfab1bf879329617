"""Fit a Keras model on samples of warm steps; deterministic for a given seed and data.

Imports TensorFlow once there is enough history to fit (not before: a refused fit costs
no 4 s and 600 MB of TensorFlow, as a replay's first decay trigger on a short file
would). Each sample is ``sequence_length`` steps of one series
(``forecaster.retraining.dataset``); the loss skips the first ``burn_in`` steps of every
sample, where the recurrent state (which starts from zero) has not yet seen enough of the
series. The last ``stopping_fraction`` of each series is the stopping split: early
stopping watches its loss (Keras' "validation data", hence ``val_loss``), the fit never
sees it. It is not the retraining gate's holdout (``forecaster.retraining.gate``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from forecaster.config import Settings
from forecaster.errors import ConfigError, TrainingError
from forecaster.model.spec import ModelSpec
from forecaster.retraining.dataset import Samples, Sequence, make_samples

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class TrainParams:
    sequence_length: int = Settings.train_window
    stride: int = 32
    burn_in: int = 8
    epochs: int = Settings.train_epochs
    batch_size: int = 16  # small: a few thousand steps make only a few hundred samples
    learning_rate: float = 2e-3
    stopping_fraction: float = 0.2
    patience: int = 4
    seed: int = Settings.seed
    min_samples: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.burn_in < self.sequence_length:
            raise ConfigError(f"burn_in must be in [0, sequence_length), got {self.burn_in}")
        if self.stride < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("stride, epochs and batch_size must be >= 1")
        if not 0 < self.stopping_fraction < 1:
            raise ConfigError("stopping_fraction must be in (0, 1)")


@dataclass(frozen=True)
class TrainReport:
    train_samples: int
    stopping_samples: int
    steps: int
    epochs_run: int
    train_loss: float
    stopping_loss: float

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
    samples = make_samples(
        sequences, params.sequence_length, params.stride, params.stopping_fraction, clip
    )
    if len(samples.y_train) < params.min_samples or len(samples.y_stopping) == 0:
        raise TrainingError(
            f"too little history: {len(samples.y_train)} training samples of "
            f"{params.sequence_length} steps (need {params.min_samples}) and "
            f"{len(samples.y_stopping)} early-stopping samples"
        )
    import keras
    import tensorflow as tf

    from forecaster.model import keras_model

    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()
    model = keras_model.build(spec, seed=params.seed)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="mse")
    history = model.fit(
        samples.x_train,
        samples.y_train[..., None],
        sample_weight=_weights(samples.y_train.shape, params.burn_in),
        validation_data=(
            samples.x_stopping,
            samples.y_stopping[..., None],
            _weights(samples.y_stopping.shape, params.burn_in),
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
    return model, _report(samples, history.history)


def _weights(shape: tuple[int, ...], burn_in: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    weights = np.ones(shape, np.float32)
    weights[:, :burn_in] = 0.0
    return weights


def _report(samples: Samples, history: dict[str, list[float]]) -> TrainReport:
    stopping = history.get("val_loss", [])
    train_loss = history.get("loss", [])
    if not stopping or not all(math.isfinite(v) for v in train_loss + stopping):
        raise TrainingError(f"training diverged (loss {train_loss[-1:] or 'none'})")
    best = int(np.argmin(stopping))
    return TrainReport(
        train_samples=len(samples.y_train),
        stopping_samples=len(samples.y_stopping),
        steps=samples.steps,
        epochs_run=len(stopping),
        train_loss=float(train_loss[best]),
        stopping_loss=float(stopping[best]),
    )
