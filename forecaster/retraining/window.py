"""The history window: how much recent history of every series a model is trained on,
selected and cleaned with pandas.

The window is the last ``ticks`` warm steps of each series and/or the steps of the last
``seconds`` of time (by tick timestamps, back from the newest tick in the history, so
a replay selects exactly what the live run did).

Normalisation, gaps and outliers, decided deliberately:

- No extra scaler (scikit-learn or other) is fitted on the window. The features are
  already normalised per series, online and causally (return / running return scale),
  and serving computes exactly those values; a scaler fitted here would have to be
  applied identically at every served tick or it is train/serve skew.
- Gaps stay in: serving steps the recurrent state straight across a gap, and the
  features see it (the return over the gap, standardised and clipped; the time of
  day). Cutting sequences at gaps would train on something serving never does.
- Outliers stay in, clipped at +-``clip`` by the features, as served; dropping them
  would leave holes in the recurrence that serving does not have.
- A series with a non-finite value, or with fewer than ``min_steps`` steps in the
  window, is dropped whole, and counted.

>>> seqs = [Sequence(np.array([0.1, 0.2, 0.3]), np.zeros(3), np.array([1, 2, 3]) * NS_PER_S)]
>>> window = select_window(seqs, WindowSpec(ticks=2), min_steps=1)
>>> [s.z.tolist() for s in window.sequences], window.summary["steps"]
([[0.2, 0.3]], 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import Settings
from forecaster.retraining.dataset import Sequence
from forecaster.timestamps import NS_PER_S


@dataclass(frozen=True)
class WindowSpec:
    """How much history a model is trained on: 0 means no limit of that kind."""

    ticks: int = Settings.retrain_window_ticks
    seconds: float = Settings.retrain_window_s


@dataclass(frozen=True)
class Window:
    """The cleaned sequences, and what they cover (for the version's metadata)."""

    sequences: list[Sequence]
    summary: dict[str, Any]


def select_window(sequences: list[Sequence], spec: WindowSpec, min_steps: int) -> Window:
    """The part of ``sequences`` (one per series, oldest step first) that ``spec`` keeps."""
    frame = _frame(sequences)
    if spec.seconds > 0 and len(frame):
        frame = frame[frame["ts"] >= frame["ts"].max() - round(spec.seconds * NS_PER_S)]
    if spec.ticks > 0:
        frame = frame.groupby("series", sort=False).tail(spec.ticks)
    held = sum(1 for s in sequences if len(s))
    if frame.empty:
        return Window([], _summary(frame, dropped=held))
    per_series = frame.groupby("series", sort=True)
    finite = per_series[["z", "d"]].transform(lambda column: np.isfinite(column).all()).all(axis=1)
    long_enough = per_series["ts"].transform("size") >= min_steps
    kept = frame[finite & long_enough]
    cleaned = [
        Sequence(
            z=group["z"].to_numpy(np.float64),
            d=group["d"].to_numpy(np.float64),
            ts=group["ts"].to_numpy(np.int64),
        )
        for _, group in kept.groupby("series", sort=True)
    ]
    return Window(cleaned, _summary(kept, dropped=held - len(cleaned)))


def _frame(sequences: list[Sequence]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series": np.repeat(np.arange(len(sequences)), [len(s) for s in sequences]),
            "ts": np.concatenate([s.ts for s in sequences]) if sequences else np.zeros(0, np.int64),
            "z": np.concatenate([s.z for s in sequences]) if sequences else np.zeros(0),
            "d": np.concatenate([s.d for s in sequences]) if sequences else np.zeros(0),
        }
    )


def _summary(frame: pd.DataFrame, dropped: int) -> dict[str, Any]:
    def iso(ns: int) -> str:
        return pd.Timestamp(ns, unit="ns", tz="UTC").isoformat()

    return {
        "first_ts": iso(int(frame["ts"].min())) if len(frame) else None,
        "last_ts": iso(int(frame["ts"].max())) if len(frame) else None,
        "series": int(frame["series"].nunique()),
        "steps": len(frame),
        "dropped_series": int(dropped),
    }
