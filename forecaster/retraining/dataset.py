"""Training data: per-series sequences of warm steps, cut into samples for Keras.

The engine computes features once, online; training reuses exactly those values
(recorded as they happen, or read back from the history rings), so a model is
trained on what it will see when serving. The target of step t is the standardised
return of step t+1, i.e. the next step's ``z``. A sample is ``sequence_length``
consecutive steps of one series: what Keras fits on, one recurrence from a zero state.

>>> recorder = HistoryRecorder(max_steps=1000)
>>> recorder(np.array([7]), np.array([0.5]), np.array([0.1]), np.array([0]))
>>> recorder(np.array([7]), np.array([-0.2]), np.array([0.0]), np.array([1]))
>>> [s.z.tolist() for s in recorder.sequences()]
[[0.5, -0.2]]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from forecaster.core.features import FEATURE_NAMES, model_inputs
from forecaster.core.table import History

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Sequence:
    """The warm steps of one series, oldest first."""

    z: FloatArray
    d: FloatArray
    ts: IntArray

    def __len__(self) -> int:
        return len(self.z)


@dataclass(frozen=True, slots=True)
class Samples:
    """Model inputs (n, sequence_length, features) and targets (n, sequence_length): the
    samples fitted on, and the later ones early stopping watches (the stopping split)."""

    x_train: Float32Array
    y_train: Float32Array
    x_stopping: Float32Array
    y_stopping: Float32Array

    @property
    def steps(self) -> int:
        return int(self.y_train.size + self.y_stopping.size)


# What a HistoryRecorder holds per step: series key, z, d and ts, 8 bytes each.
RECORDED_STEP_BYTES = 32
FIRST_CAPACITY = 4096  # steps; the arrays double from here as steps arrive, up to max_steps
# ``forecaster train`` reads a whole file: it trains on at most its newest 10 million warm
# steps (320 MB held here; Keras' samples of them take several times that).
OFFLINE_MAX_STEPS = 10_000_000


class HistoryRecorder:
    """Collects the warm steps the engine makes (a StepRecorder), grouped per series on demand.

    At most ``max_steps`` are held (``RECORDED_STEP_BYTES`` each, in arrays that double as
    steps arrive, so a large bound costs nothing until used): past that, each new step
    replaces the oldest, so every series keeps its newest steps, contiguous. Steps are
    grouped by the series key the engine gives (``SeriesTable.uid``), never by slot: a
    series evicted and then replaced in its slot by another stays a sequence of its own.

    >>> recorder = HistoryRecorder(max_steps=3)
    >>> for ts in range(4):
    ...     recorder(np.array([1, 2]), np.array([ts, -ts]), np.zeros(2), np.array([ts, ts]))
    >>> [s.z.tolist() for s in recorder.sequences()], recorder.steps, recorder.held
    ([[3.0], [-2.0, -3.0]], 8, 3)
    """

    def __init__(self, max_steps: int) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = max_steps
        capacity = min(max_steps, FIRST_CAPACITY)
        self._series = np.zeros(capacity, np.int64)
        self._z = np.zeros(capacity)
        self._d = np.zeros(capacity)
        self._ts = np.zeros(capacity, np.int64)
        self.steps = 0  # every step recorded, including those no longer held

    @property
    def held(self) -> int:
        return min(self.steps, self.max_steps)

    @property
    def nbytes(self) -> int:
        return RECORDED_STEP_BYTES * len(self._series)

    def __call__(self, series: IntArray, z: FloatArray, d: FloatArray, ts: IntArray) -> None:
        self._reserve(min(self.steps + len(series), self.max_steps))
        kept = slice(max(0, len(series) - self.max_steps), None)  # the newest fit whole
        cells = (self.steps + np.arange(len(series))[kept]) % self.max_steps
        self._series[cells] = series[kept]
        self._z[cells] = z[kept]
        self._d[cells] = d[kept]
        self._ts[cells] = ts[kept]
        self.steps += len(series)

    def _reserve(self, capacity: int) -> None:
        """Room for ``capacity`` steps (at most max_steps), doubling the arrays as needed."""
        if capacity <= len(self._series):
            return
        grown = min(self.max_steps, max(capacity, 2 * len(self._series)))
        for name in ("_series", "_z", "_d", "_ts"):
            old = getattr(self, name)
            new = np.zeros(grown, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def sequences(self) -> list[Sequence]:
        """One sequence per series held, in key order; steps keep their recorded order."""
        cells = (self.steps - self.held + np.arange(self.held)) % self.max_steps  # oldest first
        series = self._series[cells]
        order = cells[np.argsort(series, kind="stable")]
        bounds = np.flatnonzero(np.diff(self._series[order])) + 1
        return [
            Sequence(z=self._z[part], d=self._d[part], ts=self._ts[part])
            for part in np.split(order, bounds)
            if len(part)
        ]


def sequences_from_history(history: History) -> list[Sequence]:
    """The ring contents of several series as sequences (for retraining on live state)."""
    return [
        Sequence(
            z=history.z[i, :n].astype(np.float64),
            d=history.d[i, :n].astype(np.float64),
            ts=history.ts[i, :n],
        )
        for i, n in enumerate(history.length.tolist())
    ]


def save_sequences(path: Path, sequences: list[Sequence]) -> None:
    """Write ``sequences`` as one NumPy archive (for a training process; no pickle).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "window.npz"
    >>> save_sequences(path, [Sequence(np.ones(2), np.zeros(2), np.arange(2)),
    ...                       Sequence(np.ones(1), np.zeros(1), np.arange(1))])
    >>> [len(s) for s in load_sequences(path)]
    [2, 1]
    """
    z, d, ts = (
        np.concatenate([getattr(s, name) for s in sequences]) if sequences else np.zeros(0)
        for name in ("z", "d", "ts")
    )
    np.savez(path, length=np.array([len(s) for s in sequences], np.int64), z=z, d=d, ts=ts)


def load_sequences(path: Path) -> list[Sequence]:
    """The sequences ``save_sequences`` wrote."""
    with np.load(path, allow_pickle=False) as data:
        bounds = np.cumsum(data["length"])[:-1]
        z, d, ts = (np.split(data[name], bounds) for name in ("z", "d", "ts"))
        count = len(data["length"])
    return [Sequence(z[i], d[i], ts[i].astype(np.int64)) for i in range(count)]


def make_samples(
    sequences: list[Sequence], length: int, stride: int, stopping_fraction: float, clip: float
) -> Samples:
    """Cut each sequence into samples of ``length`` steps; the last ``stopping_fraction`` of
    each is the stopping split, which early stopping watches and the fit never sees.

    The stopping split starts where the training part ends, so it is always later in time
    than the data the model was fitted on. It is at least one sample long when the rest
    still holds one: otherwise every series shorter than ``length / stopping_fraction``
    steps gives training samples but no stopping one.
    """
    train: list[tuple[Float32Array, Float32Array]] = []
    stopping: list[tuple[Float32Array, Float32Array]] = []
    for sequence in sequences:
        x = model_inputs(sequence.z[:-1], sequence.d[:-1], sequence.ts[:-1])
        y = np.clip(sequence.z[1:], -clip, clip).astype(np.float32)
        split = _stopping_start(len(y), length, stopping_fraction)
        train.extend(_cut(x[:split], y[:split], length, stride))
        stopping.extend(_cut(x[split:], y[split:], length, stride))
    return Samples(*_stack(train, length), *_stack(stopping, length))


def _stopping_start(steps: int, length: int, fraction: float) -> int:
    """Where a series' stopping split starts: its last ``fraction``, or one sample if longer.

    >>> [_stopping_start(steps, length=32, fraction=0.2) for steps in (1000, 100, 40)]
    [800, 68, 32]
    """
    held_out = round(steps * fraction)
    if held_out < length <= steps - length:
        held_out = length
    return steps - held_out


def _cut(
    x: Float32Array, y: Float32Array, length: int, stride: int
) -> list[tuple[Float32Array, Float32Array]]:
    if len(y) < length:
        return []
    starts = range(0, len(y) - length + 1, stride)
    return [(x[s : s + length], y[s : s + length]) for s in starts]


def _stack(
    pairs: list[tuple[Float32Array, Float32Array]], length: int
) -> tuple[Float32Array, Float32Array]:
    if not pairs:
        return np.zeros((0, length, len(FEATURE_NAMES)), np.float32), np.zeros(
            (0, length), np.float32
        )
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
