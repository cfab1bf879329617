"""Turn recorded history into a serving model: fit with Keras, export the NumPy step.

``Trainer.fit`` is the fit of ``forecaster train`` and of every retraining run; a run in
a child process rebuilds it from its ``NamedFit``. Imports TensorFlow when a model is
trained; constructing a Trainer does not.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from forecaster.config import Settings
from forecaster.core.features import FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.retraining.dataset import Sequence
from forecaster.retraining.weights import version_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model: its serving step, its training figures and (from Keras) the full model."""

    stepper: Stepper
    details: dict[str, Any]
    keras_model: Any = None


Fit = Callable[[list[Sequence]], TrainedModel]


@dataclass(frozen=True)
class NamedFit:
    """A fit another process can rebuild from JSON: the module-level function ``function``
    (``"module:name"``), called as ``function(sequences, **params)``.

    >>> invalid_spec = {"spec": {"units": 0}, "features": {}}
    >>> fit = NamedFit("forecaster.retraining.trainer:fit_trainer", invalid_spec)
    >>> fit([])
    Traceback (most recent call last):
    ...
    forecaster.errors.ConfigError: units must be 1-1024, got 0
    """

    function: str
    params: dict[str, Any] = field(default_factory=dict)

    def __call__(self, sequences: list[Sequence]) -> TrainedModel:
        module, _, name = self.function.partition(":")
        fit: Callable[..., TrainedModel] = getattr(importlib.import_module(module), name)
        return fit(sequences, **self.params)


@dataclass(frozen=True)
class Trainer:
    """Trains models of one spec on features computed with one set of params, on samples
    of ``sequence_length`` steps (``forecaster.model.training``).

    ``threads`` > 0 bounds TensorFlow's intra- and inter-op thread pools, so that a
    retraining in the background leaves cores to the serving path.
    """

    spec: ModelSpec
    features: FeatureParams
    sequence_length: int = Settings.train_window
    epochs: int = Settings.train_epochs
    seed: int = Settings.seed
    threads: int = Settings.retrain_threads

    def fit(self, sequences: list[Sequence], verbose: int = 0) -> TrainedModel:
        """Fit a fresh model on ``sequences``; raises TrainingError when it cannot."""
        bound_tensorflow_threads(self.threads)
        from forecaster.model import training  # TensorFlow only once there is enough history

        params = training.TrainParams(
            sequence_length=self.sequence_length,
            stride=max(1, self.sequence_length // 2),
            epochs=self.epochs,
            seed=self.seed,
        )
        model, report = training.train(
            sequences, self.spec, params, clip=self.features.clip, verbose=verbose
        )
        details = {
            "training": report.to_dict(),
            "train_params": asdict(params),
            "series": len(sequences),
        }
        from forecaster.model import keras_model

        stepper = keras_model.to_stepper(model, "")
        stepper.version = version_name(stepper)
        log.info("trained model %s: %s", stepper.version, report)
        return TrainedModel(stepper, details, model)

    def named_fit(self) -> NamedFit:
        """This Trainer's ``fit`` in a form a training process rebuilds."""
        params = {"spec": self.spec.to_dict(), "features": self.features.to_dict(),
                  "sequence_length": self.sequence_length, "epochs": self.epochs,
                  "seed": self.seed, "threads": self.threads}  # fmt: skip
        return NamedFit("forecaster.retraining.trainer:fit_trainer", params)


def fit_trainer(
    sequences: list[Sequence], spec: dict[str, Any], features: dict[str, Any], **fields: Any
) -> TrainedModel:
    """``Trainer.fit`` of the Trainer that ``Trainer.named_fit`` described."""
    return Trainer(ModelSpec(**spec), FeatureParams(**features), **fields).fit(sequences)


def bound_tensorflow_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools at ``threads`` each (0 = TensorFlow's default).

    The pools are sized when TensorFlow starts, so before its import the environment
    decides; once it has started, a new size can no longer be set and this logs why.
    """
    if threads <= 0:
        return
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(threads))
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:
        log.debug("TensorFlow thread pools already sized: %s", exc)
