"""Checkpoints of an older format, read as the current format has them.

Format 3 kept each series' history ring as plain arrays, ``ring_z`` and ``ring_d``
(float32) and ``ring_ts`` (int64), row i's newest step in column
``(ring_count[i] - 1) % ring_length``. Format 4 keeps five-byte cells
(``forecaster.core.ring``) and each ring's newest and track times: the steps are
appended again, oldest first, to a table of the restoring engine's clip. Format 3's
series statistics held the intervals' calibration with one threshold per kind
(``FORMAT_3_STATS``); format 4 keeps the calibration apart, a threshold per expert
(``forecaster.core.intervals``), which all start from the kind's one, with no loss yet.
Everything else of the two formats is the same, and the result is checked as any
checkpoint is.

>>> z = np.array([[4.0, 5.0, 3.0]], np.float32)  # 5 appends: the newest in column 1
>>> old = {"ring_z": z, "ring_d": z, "ring_ts": np.array([[40, 50, 30]]) * 10**9,
...        "ring_count": np.array([5]), "stats": np.zeros(1, FORMAT_3_STATS)}
>>> new = upgraded(old, clip=8.0)
>>> table = SeriesTable(3, 0, capacity=1)
>>> for name in ("ring", "ring_newest_ts", "ring_track_ts", "ring_count"):
...     getattr(table, name)[:1] = new[name]
>>> history = table.history(np.array([0]))
>>> history.z.round(2).tolist(), (history.ts / 10**9).round(2).tolist()
([[3.0, 4.0, 5.0]], [[30.0, 40.0, 50.0]])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.features import N_REGRESSORS, STATS_DTYPE
from forecaster.core.intervals import KINDS, new_calibration
from forecaster.core.table import SeriesTable

UPGRADED_FORMATS = (3,)
FORMAT_3_RINGS = {"ring_z": np.float32, "ring_d": np.float32, "ring_ts": np.int64}
# Format 3 as it was written, spelled out: it must not change when the current format does.
INTERVAL_FIELDS = ("fast", "slow", "cov", "var", "count", "shift")
FORMAT_3_STATS = np.dtype(
    [
        ("last_price", np.float64),
        ("last_ts", np.int64),
        ("n_returns", np.int64),
        ("scale_sq", np.float64),
        ("level", np.float64),
        ("head_gram", np.float64, (N_REGRESSORS, N_REGRESSORS)),
        ("head_cross", np.float64, (N_REGRESSORS,)),
        ("head_inputs", np.float64, (N_REGRESSORS,)),
        ("skill_cross", np.float64),
        ("skill_power", np.float64),
        ("last_head", np.float64),
        *[
            (f"{kind}_{name}", np.float64)
            for kind in ("naive", "model")
            for name in INTERVAL_FIELDS
        ],
    ]
)

Arrays = dict[str, npt.NDArray[Any]]


def upgraded(arrays: Arrays, clip: float) -> Arrays:
    """The arrays of a format 3 checkpoint as format 4 has them; ValueError if its rings
    are not rings to encode (missing, of another dtype or shape, NaN, negative counts)."""
    count = arrays.get("ring_count")
    if count is None or count.dtype != np.int64 or count.ndim != 1 or (count < 0).any():
        raise ValueError("a format 3 ring_count that is missing, negative or not int64")
    rings = [arrays.get(name) for name in FORMAT_3_RINGS]
    for (name, dtype), ring in zip(FORMAT_3_RINGS.items(), rings, strict=True):
        if ring is None or ring.dtype != dtype or ring.ndim != 2 or len(ring) != len(count):
            raise ValueError(f"a format 3 {name} that is missing or of another dtype or shape")
    z, d, ts = (np.asarray(ring) for ring in rings)
    if not z.shape == d.shape == ts.shape:
        raise ValueError("format 3 rings of different shapes")
    if not (np.isfinite(z).all() and np.isfinite(d).all()):
        raise ValueError("ring_z or ring_d holds NaN or infinity")
    stats = arrays.get("stats")
    if stats is None or stats.dtype != FORMAT_3_STATS or stats.shape != count.shape:
        raise ValueError("format 3 stats that are missing or of another dtype or shape")
    kept = {name: array for name, array in arrays.items() if name not in FORMAT_3_RINGS}
    return kept | _cells(z, d, ts, count, clip) | _split(stats)


def _split(old: npt.NDArray[np.void]) -> Arrays:
    """Format 4's statistics and calibration: every expert's threshold starts at the
    kind's one."""
    stats, calibration = np.zeros(len(old), STATS_DTYPE), new_calibration(len(old))
    for name in STATS_DTYPE.names or ():
        stats[name] = old[name]
    for kind in KINDS:
        for name in INTERVAL_FIELDS:
            field = f"{kind}_{name}"
            calibration[field] = old[field][:, None] if name == "shift" else old[field]
    return {"stats": stats, "calibration": calibration}


def _cells(z: npt.NDArray[np.float32], d: npt.NDArray[np.float32], ts: npt.NDArray[np.int64],
           count: npt.NDArray[np.int64], clip: float) -> Arrays:  # fmt: skip
    """Format 4's ring arrays of the same steps, appended oldest first; counts unchanged."""
    n, length = z.shape
    table = SeriesTable(length, 0, capacity=max(n, 1), clip=clip)
    held = np.minimum(count, length)
    table.ring_count[:n] = count - held
    for step in range(int(held.max(initial=0))):
        rows = np.flatnonzero(held > step)
        column = (count[rows] - held[rows] + step) % length
        table.append_history(rows, z[rows, column], d[rows, column], ts[rows, column])
    return {name: getattr(table, name)[:n].copy()
            for name in ("ring", "ring_newest_ts", "ring_track_ts")}  # fmt: skip
