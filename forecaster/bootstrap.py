"""The first model: trained from the first window of data when the service starts without one.

Until it is ready every forecast is naive and says so. In a replay the training runs
inline at a batch boundary fixed by the data (``steps`` warm steps seen), so two
replays of one file give identical forecasts; in a live service it runs on a
background thread while ticks keep flowing, and the model is swapped in at the first
batch boundary after it is done.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import numpy.typing as npt

from forecaster.dataset import HistoryRecorder, Sequence
from forecaster.errors import TrainingError
from forecaster.model.stepper import Stepper
from forecaster.trainer import TrainedModel, Trainer

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Bootstrap:
    """Collects warm steps (as the engine's recorder) and hands over the first model."""

    def __init__(self, trainer: Trainer, steps: int, background: bool) -> None:
        self.trainer = trainer
        self.steps = steps
        self.background = background
        self._recorder: HistoryRecorder | None = HistoryRecorder()
        self._thread: threading.Thread | None = None
        self._result: TrainedModel | None = None

    def record(self, slots: IntArray, z: FloatArray, d: FloatArray, ts: IntArray) -> None:
        if self._recorder is not None:
            self._recorder(slots, z, d, ts)

    def pending(self) -> Stepper | None:
        """Called at each batch boundary: the new model to swap in, if one is ready."""
        if self._thread is not None:
            if self._thread.is_alive():
                return None
            self._thread = None
        if self._result is not None:
            stepper, self._result = self._result.stepper, None
            return stepper
        recorder = self._recorder
        if recorder is None or recorder.steps < self.steps:
            return None
        sequences = recorder.sequences()
        if not self.background:
            self._train(sequences, recorder.steps)
            return self.pending()
        self._thread = threading.Thread(
            target=self._train, args=(sequences, recorder.steps), name="bootstrap", daemon=True
        )
        self._thread.start()
        return None

    def _train(self, sequences: list[Sequence], steps: int) -> None:
        log.info("training the first model on %d warm steps of %d series", steps, len(sequences))
        try:
            self._result = self.trainer.train(sequences)
            self._recorder = None
        except TrainingError as exc:
            self.steps = 2 * steps
            log.warning("first model not trained (%s); next try after %d steps", exc, self.steps)
