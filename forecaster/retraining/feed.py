"""What retraining learns from the engine's committed steps: the ``StepFeed``.

One feed is built with the engine and handed to both: the Engine calls it at each
commit (it is the engine's ``recorder``), the Retrainer reads it. It counts the warm
steps since the last run (the ``every_ticks`` trigger), keeps the newest tick time (the
clock a replay's schedule runs on) and, while no model serves, records the warm steps
the first model is trained on (the bootstrap).

>>> feed = StepFeed(bootstrap_steps=2, first_model=True)
>>> feed(np.array([1, 2]), np.zeros(2), np.zeros(2), np.array([5, 7]))
>>> feed.steps_since_run, feed.newest_ts, feed.bootstrap_due()
(2, 7, True)
>>> feed.bootstrap_missed(), feed.bootstrap_due()  # the next try waits for twice the steps
(4, False)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from forecaster.retraining.dataset import HistoryRecorder

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# The bootstrap recorder holds this many times the warm steps the first model waits for.
# A bootstrap run that fails or is rejected is retried at twice the steps seen
# (``bootstrap_missed``), so the first two retries each train on more data than the try
# before; beyond that, more of the same naive-served stream is unlikely to change the
# outcome, and the recorder stays at 2.6 MB for the default 20,000 steps.
BOOTSTRAP_HEADROOM = 4
# Whatever bootstrap_steps says (a test or a naive-only service sets it to 10**9), the
# bootstrap recorder holds at most 8 million steps: 256 MB.
BOOTSTRAP_MAX_STEPS = 8_000_000


class StepFeed:
    """The engine's StepRecorder for retraining; ``first_model``: no model serves yet, so
    the newest ``BOOTSTRAP_HEADROOM`` x ``bootstrap_steps`` warm steps are recorded."""

    def __init__(self, bootstrap_steps: int, first_model: bool) -> None:
        self.steps_since_run = 0
        self.newest_ts = 0
        self.bootstrap = bootstrap_recorder(bootstrap_steps) if first_model else None
        self._bootstrap_at = bootstrap_steps

    def __call__(self, series: IntArray, z: FloatArray, d: FloatArray, ts: IntArray) -> None:
        self.steps_since_run += len(series)
        self.newest_ts = max(self.newest_ts, int(ts.max(initial=0)))
        if self.bootstrap is not None:
            self.bootstrap(series, z, d, ts)

    def bootstrap_due(self) -> bool:
        """No model yet, and the warm steps the first one waits for have been seen."""
        return self.bootstrap is not None and self.bootstrap.steps >= self._bootstrap_at

    def run_started(self) -> None:
        self.steps_since_run = 0

    def model_served(self) -> None:
        """A model serves: the first model's data is needed no more."""
        self.bootstrap = None

    def bootstrap_missed(self) -> int:
        """A bootstrap run gave no model: the next waits for twice the steps seen (returned)."""
        assert self.bootstrap is not None, "only a feed still bootstrapping misses"
        self._bootstrap_at = 2 * self.bootstrap.steps
        return self._bootstrap_at


def bootstrap_recorder(bootstrap_steps: int) -> HistoryRecorder:
    """The recorder of the data a first model is trained on (``BOOTSTRAP_HEADROOM``,
    ``BOOTSTRAP_MAX_STEPS``)."""
    return HistoryRecorder(min(BOOTSTRAP_HEADROOM * bootstrap_steps, BOOTSTRAP_MAX_STEPS))
