"""Forecasts lined up with what happened next: one point per forecast tick, in file order.

A point is a tick the service forecast from; its ``actual`` is the price of the same
series' next accepted tick (NaN on a series' last tick, which has nothing to score).
Several replays of one file (one per cell type) share the points; the generator's
oracle, when given, is joined on ``(series, ts)``.

>>> import json, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "lstm.jsonl"
>>> rows = [("A", 10.0, 10.5, "naive"), ("B", 5.0, 5.0, "naive"), ("A", 11.0, 11.2, "m1")]
>>> _ = path.write_text("".join(json.dumps({"series": s, "ts": f"t{i}", "price": p,
...     "forecast": f, "model_version": v}) + "\\n" for i, (s, p, f, v) in enumerate(rows)))
>>> points = load_points({"lstm": path})
>>> points.actual.tolist(), points.position.tolist()
([11.0, nan, nan], [0, 0, 1])
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from forecaster.core.engine import NAIVE
from forecaster.errors import ForecasterError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Points:
    """Aligned columns, one row per forecast tick, in the order the ticks were replayed."""

    series: list[str]
    ts: list[str]
    price: FloatArray
    actual: FloatArray  # the series' next price; NaN on its last tick
    position: IntArray  # index of the tick within its series
    forecasts: dict[str, FloatArray]  # by cell type
    versions: dict[str, list[str]]  # model version of each forecast, by cell type
    oracle: FloatArray | None = None  # the generator's best forecast, when known
    kind: list[str] | None = None  # the generator's process of each series, when known

    def __len__(self) -> int:
        return len(self.series)

    def by_series(self) -> dict[str, IntArray]:
        """Row indices of each series, in time order, series in order of first appearance."""
        rows: dict[str, list[int]] = {}
        for index, name in enumerate(self.series):
            rows.setdefault(name, []).append(index)
        return {name: np.array(indices, np.int64) for name, indices in rows.items()}

    def model_made(self) -> BoolArray:
        """Rows every cell's model forecast (not the naive fallback)."""
        made = np.ones(len(self), bool)
        for versions in self.versions.values():
            made &= np.array([version != NAIVE for version in versions], bool)
        return made


def load_points(forecast_files: Mapping[str, Path], oracle_file: Path | None = None) -> Points:
    """Read one forecast file per cell type (same ticks in each) and the optional oracle."""
    if not forecast_files:
        raise ForecasterError("no forecast files to score")
    forecasts: dict[str, FloatArray] = {}
    versions: dict[str, list[str]] = {}
    keys: list[tuple[str, str]] = []
    price = np.zeros(0)
    for cell, path in forecast_files.items():
        cell_keys, cell_price, forecasts[cell], versions[cell] = _read_forecasts(path)
        if not keys:
            keys, price = cell_keys, cell_price
        elif cell_keys != keys or not np.array_equal(cell_price, price):
            raise ForecasterError(f"{path} does not hold the same ticks as the other replays")
    series = [name for name, _ in keys]
    points = Points(
        series=series,
        ts=[ts for _, ts in keys],
        price=price,
        actual=np.full(len(keys), math.nan),
        position=np.zeros(len(keys), np.int64),
        forecasts=forecasts,
        versions=versions,
    )
    for rows in points.by_series().values():
        points.actual[rows[:-1]] = price[rows[1:]]
        points.position[rows] = np.arange(len(rows))
    if oracle_file is None:
        return points
    oracle, kind = _read_oracle(oracle_file, keys)
    return replace(points, oracle=oracle, kind=kind)


def _read_forecasts(path: Path) -> tuple[list[tuple[str, str]], FloatArray, FloatArray, list[str]]:
    keys: list[tuple[str, str]] = []
    prices: list[float] = []
    forecasts: list[float] = []
    versions: list[str] = []
    with path.open(encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            keys.append((record["series"], record["ts"]))
            prices.append(record["price"])
            forecasts.append(record["forecast"])
            versions.append(record["model_version"])
    return keys, np.array(prices, np.float64), np.array(forecasts, np.float64), versions


def _read_oracle(path: Path, keys: list[tuple[str, str]]) -> tuple[FloatArray, list[str]]:
    """The oracle and kind of every point; a point the oracle file lacks gets NaN and ''."""
    known: dict[tuple[str, str], tuple[float, str]] = {}
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            value = float(row["oracle"]) if row["oracle"] else math.nan
            known[(row["series"], row["ts"])] = (value, row["kind"])
    found = [known.get(key, (math.nan, "")) for key in keys]
    return np.array([value for value, _ in found], np.float64), [kind for _, kind in found]
