"""Forecasts lined up with what happened next: one point per forecast tick, in file order.

A point is a tick the service forecast from; its ``actual`` is the price of the same
series' next accepted tick (NaN on a series' last tick, which has nothing to score).
Several replays of one file (one per cell type) share the points; each forecast's
prediction interval comes along when its records carry one (``lower``, ``upper``). The
generator's oracle, when given, is joined on ``(series, ts)``, with the mean and sd of
the next log return when the oracle file has them (``oracle_log_mean``, ``oracle_log_sd``).

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
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from forecaster.core.engine import NAIVE
from forecaster.errors import ForecasterError

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ORACLE = "oracle"  # the row of the generator's oracle
ORACLE_COLUMNS = ("series", "ts", "oracle")  # an oracle file's least header
ORACLE_LOG_COLUMNS = ("oracle_log_mean", "oracle_log_sd")


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
    # the interval of each forecast (lower, upper), by cell type, where the records have it
    bounds: dict[str, tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    # the mean and sd of the next log return, given the tick, when the oracle knows them
    oracle_log: tuple[FloatArray, FloatArray] | None = None

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
    replays = {cell: _read_forecasts(path) for cell, path in forecast_files.items()}
    first = next(iter(replays.values()))
    for cell, replay in replays.items():
        if replay.keys != first.keys or not np.array_equal(replay.price, first.price):
            raise ForecasterError(
                f"{forecast_files[cell]} does not hold the same ticks as the other replays"
            )
    points = Points(
        series=[name for name, _ in first.keys],
        ts=[ts for _, ts in first.keys],
        price=first.price,
        actual=np.full(len(first.keys), math.nan),
        position=np.zeros(len(first.keys), np.int64),
        forecasts={cell: replay.forecast for cell, replay in replays.items()},
        versions={cell: replay.versions for cell, replay in replays.items()},
        bounds={cell: replay.bounds for cell, replay in replays.items() if replay.bounds},
    )
    for rows in points.by_series().values():
        points.actual[rows[:-1]] = first.price[rows[1:]]
        points.position[rows] = np.arange(len(rows))
    if oracle_file is None:
        return points
    kind, oracle, oracle_log = _read_oracle(oracle_file, first.keys)
    return replace(points, kind=kind, oracle=oracle, oracle_log=oracle_log)


@dataclass(frozen=True)
class _Replay:
    """One forecast file's columns."""

    keys: list[tuple[str, str]]
    price: FloatArray
    forecast: FloatArray
    versions: list[str]
    bounds: tuple[FloatArray, FloatArray] | None  # None unless every record has one


def _read_forecasts(path: Path) -> _Replay:
    keys: list[tuple[str, str]] = []
    columns: dict[str, list[float]] = {"price": [], "forecast": [], "lower": [], "upper": []}
    versions: list[str] = []
    bounded = True
    with path.open(encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            keys.append((record["series"], record["ts"]))
            versions.append(record["model_version"])
            bounded = bounded and "lower" in record and "upper" in record
            for name, values in columns.items():
                values.append(record.get(name, math.nan))
    price, forecast, lower, upper = (np.array(columns[name], np.float64) for name in columns)
    return _Replay(keys, price, forecast, versions, (lower, upper) if bounded and keys else None)


def check_oracle(path: Path) -> None:
    """ForecasterError unless ``path`` is a CSV whose header has ORACLE_COLUMNS (checked
    before a backtest's replays, which take minutes)."""
    try:
        with _open_oracle(path) as file:
            header = next(csv.reader(file), [])
    except (OSError, csv.Error) as exc:
        raise ForecasterError(f"cannot read oracle file {path}: {exc}") from exc
    missing = [name for name in ORACLE_COLUMNS if name not in header]
    if missing:
        raise ForecasterError(f"oracle file {path}: header lacks column(s) {missing}")


def _read_oracle(
    path: Path, keys: list[tuple[str, str]]
) -> tuple[list[str], FloatArray, tuple[FloatArray, FloatArray] | None]:
    """The kind and oracle of every point, and the oracle's log-return mean and sd if the
    file has them; a point the oracle file lacks, or whose value is no finite number,
    gets '' and NaN (the count of such values is logged)."""
    check_oracle(path)
    with _open_oracle(path) as file:
        reader = csv.DictReader(file)
        known = {(row["series"], row["ts"]): row for row in reader}
        has_log = set(ORACLE_LOG_COLUMNS) <= set(reader.fieldnames or ())
    found = [known.get(key, {}) for key in keys]

    def column(name: str) -> FloatArray:
        given = sum(name in row for row in found)
        values = np.array([_number(row.get(name)) for row in found], np.float64)
        if unusable := given - int(np.isfinite(values).sum()):
            log.warning("oracle file %s: %d %s values are no finite number; left out",
                        path, unusable, name)  # fmt: skip
        return values

    mean, sd = ORACLE_LOG_COLUMNS
    oracle_log = (column(mean), column(sd)) if has_log else None
    return [row.get("kind") or "" for row in found], column("oracle"), oracle_log


def _open_oracle(path: Path) -> TextIO:
    # surrogateescape: a byte that is not UTF-8 spoils its row's key, not the file
    return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")


def _number(text: str | None) -> float:
    """The finite number ``text`` holds, else NaN (an empty, missing or bad value)."""
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan
