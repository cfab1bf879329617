"""Seeded synthetic tick streams whose next-price distribution (the oracle's) is known exactly.

Each series follows one process on its log price ``x_t`` (``r_t = x_t - x_{t-1}``,
``eps ~ N(0, 1)`` independent, one step per tick of that series):

==============  =============================================  =============================
kind            next log price ``x_{t+1}``                     oracle
==============  =============================================  =============================
random_walk     ``x_t + vol*eps``                              ``p_t``
ar1             ``x_t + phi*r_t + vol*eps``                    ``p_t*exp(phi*r_t)``
mean_reversion  ``x_t + kappa*(mu - x_t) + vol*eps``           ``exp(x_t + kappa*(mu - x_t))``
intraday        ``x_t + a*sin(2*pi*tod_t) + vol*eps``          ``p_t*exp(a*sin(2*pi*tod_t))``
garch           ``x_t + s_t*eps``,                             ``p_t``
                ``s_t^2 = w + alpha*r_t^2 + beta*s_{t-1}^2``
==============  =============================================  =============================

``mu`` is the log of the start price and ``tod_t`` the UTC time of day of tick ``t`` as a
fraction of a day. garch is a GARCH(1,1) whose unconditional variance is ``vol^2``
(``w = vol^2*(1 - alpha - beta)``), started at it (``s_0 = vol``). The oracle is the
conditional median of the next price. Besides it, every tick but a series' last carries what
an oracle knows of the next price's distribution: the next log-return ``x_{t+1} - x_t`` is
Gaussian with mean ``log_mean`` (the predictable part above) and sd ``log_sd`` (``vol``, or
``s_t`` for garch), so :func:`oracle_interval` gives its true central interval at any
coverage. Every kind knows both; only a series' last tick, which nothing follows, has none.

Every price is rounded to 6 significant digits as soon as it is drawn and the process
continues from the rounded price, so the formulas hold exactly for the prices written (the
interval is exact for the price before rounding, which moves it by at most 5e-6 of itself).
Inter-arrival times are exponential, in whole milliseconds and at least 1 ms, so each series'
timestamps strictly increase.

Rebuild the committed sample data byte for byte with::

    python -m forecaster.evaluation.synthetic --seed 7 --out sample_data
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

KINDS = ("random_walk", "ar1", "mean_reversion", "intraday", "garch")
DEFAULT_START = "2026-01-05T00:00:00Z"
DEFAULT_TICKS_PER_SERIES = 5000
PRICE_DIGITS = 6
# The oracle is written to 10 significant digits (< 1e-9 relative, far below any price step)
# so that a last-bit difference between platforms' exp() does not change the file.
ORACLE_DIGITS = 10
VOLUME_LOG_MEDIAN = 4.0  # volumes are lognormal around e^4 ~ 55 units
VOLUME_LOG_SIGMA = 1.0
DAY_MS = 86_400_000
TICKS_HEADER = ("series", "ts", "price", "volume")
ORACLE_HEADER = ("series", "ts", "kind", "oracle", "oracle_log_mean", "oracle_log_sd")
MALFORMED_HEADER = (*TICKS_HEADER, "expected_reason")


@dataclass(frozen=True)
class SeriesSpec:
    """One synthetic series: its process, price level, noise and mean inter-arrival time."""

    name: str
    kind: str
    start_price: float
    volatility: float  # per-tick std of the log-return noise (garch: its unconditional std)
    param: float = 0.0  # phi for ar1, kappa for mean_reversion, a for intraday, alpha for garch
    mean_interval_s: float = 150.0
    beta: float = 0.0  # garch only: the weight of the last conditional variance

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"series {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}"
            )
        if not (self.start_price > 0 and self.volatility >= 0 and self.mean_interval_s > 0):
            raise ValueError(f"series {self.name!r}: start_price, volatility or interval invalid")
        garch = self.kind == "garch"
        if garch and not (self.param >= 0 and self.beta >= 0 and self.param + self.beta < 1):
            raise ValueError(
                f"series {self.name!r}: garch needs alpha, beta >= 0, alpha + beta < 1"
            )
        if not garch and self.beta != 0:
            raise ValueError(f"series {self.name!r}: beta is a garch parameter")


DEFAULT_SERIES: tuple[SeriesSpec, ...] = (
    SeriesSpec("RW-BTC", "random_walk", 3985.5, 0.0035, mean_interval_s=120.0),
    SeriesSpec("RW-DOGE", "random_walk", 0.0712, 0.004, mean_interval_s=140.0),
    SeriesSpec("RW-SPX", "random_walk", 512.37, 0.0005, mean_interval_s=150.0),
    SeriesSpec("RW-EURUSD", "random_walk", 1.0842, 0.0006, mean_interval_s=165.0),
    SeriesSpec("AR-ALPHA", "ar1", 23.45, 0.001, 0.3, mean_interval_s=130.0),
    SeriesSpec("AR-BETA", "ar1", 187.2, 0.0015, 0.4, mean_interval_s=155.0),
    SeriesSpec("AR-GAMMA", "ar1", 0.8734, 0.003, 0.5, mean_interval_s=175.0),
    SeriesSpec("MR-PAIR", "mean_reversion", 64.18, 0.0008, 0.02, mean_interval_s=145.0),
    SeriesSpec("MR-RATE", "mean_reversion", 3.125, 0.0012, 0.05, mean_interval_s=160.0),
    SeriesSpec("MR-SPREAD", "mean_reversion", 1250.0, 0.0025, 0.1, mean_interval_s=135.0),
    SeriesSpec("ID-POWER", "intraday", 42.5, 0.002, 0.003, mean_interval_s=150.0),
    SeriesSpec("ID-GAS", "intraday", 2.871, 0.001, 0.0015, mean_interval_s=180.0),
    SeriesSpec("GA-CRUDE", "garch", 71.84, 0.002, 0.08, mean_interval_s=125.0, beta=0.9),
    SeriesSpec("GA-NDX", "garch", 18234.5, 0.0008, 0.05, mean_interval_s=150.0, beta=0.93),
)

_TEST_PRICES = (0.07, 0.45, 1.2, 3.5, 12.0, 48.0, 150.0, 420.0, 1300.0, 4000.0)


def _uniform_set(prefix: str, kind: str, param: float, beta: float = 0.0) -> tuple[SeriesSpec, ...]:
    """Ten series of one process over the whole range of price levels, for tests."""
    return tuple(
        SeriesSpec(f"{prefix}-{i:02d}", kind, price, 0.001 + 0.0002 * i, param, beta=beta)
        for i, price in enumerate(_TEST_PRICES)
    )


SERIES_SETS: dict[str, tuple[SeriesSpec, ...]] = {
    "default": DEFAULT_SERIES,
    "random_walk": _uniform_set("RW", "random_walk", 0.0),
    "ar1": _uniform_set("AR", "ar1", 0.5),
    "garch": _uniform_set("GA", "garch", 0.08, beta=0.9),
}


@dataclass
class Ticks:
    """All ticks of all series, merged in global time order (ties broken by series name)."""

    series: list[str]
    ts_ms: IntArray  # epoch milliseconds, UTC
    price: FloatArray
    volume: FloatArray
    oracle: FloatArray  # forecast of the series' next price made at this tick; NaN on its last
    kind: list[str]
    log_mean: FloatArray  # mean of the next log-return given this tick; NaN on a series' last
    log_sd: FloatArray  # its standard deviation; NaN on a series' last

    def __len__(self) -> int:
        return len(self.series)


@dataclass(frozen=True)
class _PricePath:
    price: FloatArray
    oracle: FloatArray
    log_mean: FloatArray
    log_sd: FloatArray


@dataclass(frozen=True)
class _SeriesPath:
    ts_ms: IntArray
    volume: FloatArray
    prices: _PricePath


def generate(
    specs: Sequence[SeriesSpec], ticks_per_series: int, seed: int, start: str = DEFAULT_START
) -> Ticks:
    """Simulate every series from its own child seed of ``seed`` and merge them in time order."""
    if ticks_per_series < 1:
        raise ValueError(f"ticks_per_series must be >= 1, got {ticks_per_series}")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError("series names must be unique")
    start_ms = _epoch_ms(start)
    children = np.random.SeedSequence(seed).spawn(len(specs))
    paths = [
        _simulate(spec, ticks_per_series, start_ms, np.random.default_rng(child))
        for spec, child in zip(specs, children, strict=True)
    ]
    return _merge(specs, paths)


def round_significant(value: float, digits: int) -> float:
    """``value`` correctly rounded to ``digits`` significant decimal digits."""
    return float(f"{value:.{digits - 1}e}")


def oracle_interval(
    price: npt.ArrayLike, log_mean: npt.ArrayLike, log_sd: npt.ArrayLike, coverage: float
) -> tuple[FloatArray, FloatArray]:
    """The true central interval of the next price at ``coverage``, from an oracle row.

    The next log-return is Gaussian, so the interval is ``price*exp(log_mean -+ z*log_sd)``
    with ``z`` the standard normal quantile at ``(1 + coverage) / 2``:

    >>> lower, upper = oracle_interval([100.0, 2.0], [0.0, 0.001], [0.01, 0.002], 0.9)
    >>> lower.round(4).tolist(), upper.round(4).tolist()
    ([98.3686, 1.9954], [101.6585, 2.0086])
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    z = NormalDist().inv_cdf((1 + coverage) / 2)
    center = np.asarray(price, np.float64) * np.exp(np.asarray(log_mean, np.float64))
    spread = z * np.asarray(log_sd, np.float64)
    return center * np.exp(-spread), center * np.exp(spread)


def _epoch_ms(timestamp: str) -> int:
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is None:
        raise ValueError(f"start {timestamp!r} needs a timezone")
    return round(moment.timestamp() * 1000)


def _simulate(spec: SeriesSpec, count: int, start_ms: int, rng: np.random.Generator) -> _SeriesPath:
    gaps = np.maximum(np.rint(rng.exponential(spec.mean_interval_s * 1000.0, count)), 1.0)
    ts_ms = start_ms + np.cumsum(gaps.astype(np.int64))
    shocks = rng.standard_normal(count - 1)
    volume = np.maximum(np.rint(rng.lognormal(VOLUME_LOG_MEDIAN, VOLUME_LOG_SIGMA, count)), 1.0)
    return _SeriesPath(ts_ms, volume, _price_path(spec, ts_ms, shocks))


def _price_path(spec: SeriesSpec, ts_ms: IntArray, shocks: FloatArray) -> _PricePath:
    """Prices rounded as emitted, and the oracle of the next price at every tick but the last.

    A scalar loop on ``math`` functions: each step depends on the rounded previous price, and
    libm results do not depend on which SIMD kernels numpy picks for this CPU.
    """
    price = [round_significant(spec.start_price, PRICE_DIGITS)]
    oracle: list[float] = []
    log_mean: list[float] = []
    log_sd: list[float] = []
    log_price = math.log(price[0])
    last_return = 0.0
    sd = spec.volatility
    for now_ms, shock in zip(ts_ms[:-1].tolist(), shocks.tolist(), strict=True):
        drift = _log_drift(spec, log_price, last_return, (now_ms % DAY_MS) / DAY_MS)
        oracle.append(round_significant(price[-1] * math.exp(drift), ORACLE_DIGITS))
        log_mean.append(round_significant(drift, ORACLE_DIGITS))
        log_sd.append(round_significant(sd, ORACLE_DIGITS))
        price.append(round_significant(math.exp(log_price + drift + sd * shock), PRICE_DIGITS))
        next_log_price = math.log(price[-1])
        last_return = next_log_price - log_price
        log_price = next_log_price
        sd = _next_sd(spec, sd, last_return - drift)
    for column in (oracle, log_mean, log_sd):
        column.append(math.nan)  # nothing follows the last tick
    return _PricePath(np.array(price), np.array(oracle), np.array(log_mean), np.array(log_sd))


def _log_drift(spec: SeriesSpec, log_price: float, last_return: float, time_of_day: float) -> float:
    """The predictable part of the next log-return, given the state at this tick."""
    if spec.kind == "ar1":
        return spec.param * last_return
    if spec.kind == "mean_reversion":
        return spec.param * (math.log(spec.start_price) - log_price)
    if spec.kind == "intraday":
        return spec.param * math.sin(2.0 * math.pi * time_of_day)
    return 0.0


def _next_sd(spec: SeriesSpec, sd: float, surprise: float) -> float:
    """The sd of the next log-return, given this one's and its realised surprise."""
    if spec.kind != "garch":
        return spec.volatility
    alpha, beta = spec.param, spec.beta
    base = spec.volatility**2 * (1.0 - alpha - beta)
    return math.sqrt(base + alpha * surprise**2 + beta * sd**2)


def _merge(specs: Sequence[SeriesSpec], paths: Sequence[_SeriesPath]) -> Ticks:
    name_rank = {name: rank for rank, name in enumerate(sorted(spec.name for spec in specs))}
    owner = np.concatenate([np.full(len(path.ts_ms), i) for i, path in enumerate(paths)])
    ts_ms = np.concatenate([path.ts_ms for path in paths])
    ranks = np.array([name_rank[spec.name] for spec in specs])[owner]
    order = np.lexsort((ranks, ts_ms))
    owner = owner[order]

    def merged(values: Sequence[FloatArray]) -> FloatArray:
        return np.concatenate(values)[order]

    return Ticks(
        series=[specs[i].name for i in owner.tolist()],
        ts_ms=ts_ms[order],
        price=merged([path.prices.price for path in paths]),
        volume=merged([path.volume for path in paths]),
        oracle=merged([path.prices.oracle for path in paths]),
        kind=[specs[i].kind for i in owner.tolist()],
        log_mean=merged([path.prices.log_mean for path in paths]),
        log_sd=merged([path.prices.log_sd for path in paths]),
    )


def write_ticks_csv(ticks: Ticks, path: Path) -> None:
    """The tick stream as CSV: ``series,ts,price,volume``."""
    rows = zip(
        ticks.series,
        format_ts(ticks.ts_ms),
        _format_floats(ticks.price),
        [str(int(volume)) for volume in ticks.volume.tolist()],
        strict=True,
    )
    _write_csv(path, TICKS_HEADER, rows)


def write_oracle_csv(ticks: Ticks, path: Path) -> None:
    """The oracle of every tick as CSV: ``series,ts,kind,oracle,oracle_log_mean,oracle_log_sd``
    (the last three empty on a series' last tick)."""
    rows = zip(
        ticks.series,
        format_ts(ticks.ts_ms),
        ticks.kind,
        _format_floats(ticks.oracle),
        _format_floats(ticks.log_mean),
        _format_floats(ticks.log_sd),
        strict=True,
    )
    _write_csv(path, ORACLE_HEADER, rows)


def format_ts(ts_ms: IntArray) -> list[str]:
    """Epoch milliseconds as RFC 3339 UTC strings such as ``2026-01-05T00:02:31.507Z``."""
    text = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms")
    return [f"{moment}Z" for moment in text.tolist()]


def _format_floats(values: FloatArray) -> list[str]:
    return ["" if math.isnan(value) else repr(value) for value in values.tolist()]


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


# Each bad row breaks exactly one rule; its ts is later than the series' last accepted tick
# unless the rule it breaks is about ordering. Valid rows have an empty expected_reason.
MALFORMED_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("CTX-A", "2026-01-05T10:00:00.000Z", "101.25", "12", ""),
    ("CTX-B", "2026-01-05T10:00:01.250Z", "0.5031", "", ""),
    ("", "2026-01-05T10:00:02Z", "101.3", "5", "missing_series"),
    ("CTX-A", "", "101.3", "5", "missing_ts"),
    ("CTX-A", "2026-01-05T10:00:03Z", "", "5", "missing_price"),
    ("S" * 201, "2026-01-05T10:00:04Z", "101.3", "5", "series_length"),
    ("CTX-A", "2026-01-05T10:00:05Z", "101.5", "7", ""),
    ("CTX-A", "yesterday", "101.3", "5", "ts_format"),
    ("CTX-A", "2026-13-45T00:00:00Z", "101.3", "5", "ts_format"),
    ("CTX-A", "2026-01-05T10:00:06", "101.3", "5", "ts_no_timezone"),
    ("CTX-A", "99999999999999999", "101.3", "5", "ts_out_of_range"),
    ("CTX-B", "1767607210000", "0.5029", "40", ""),
    ("CTX-B", "2026-01-05T10:00:11Z", "abc", "5", "price_type"),
    ("CTX-B", "2026-01-05T10:00:12Z", "NaN", "5", "price_not_finite"),
    ("CTX-B", "2026-01-05T10:00:13Z", "inf", "5", "price_not_finite"),
    ("CTX-B", "2026-01-05T10:00:14Z", "0", "5", "price_not_positive"),
    ("CTX-B", "2026-01-05T10:00:15Z", "-3.5", "5", "price_not_positive"),
    ("CTX-B", "2026-01-05T10:00:16Z", "0.5033", "lots", "volume_type"),
    ("CTX-B", "2026-01-05T10:00:17Z", "0.5033", "-1", "volume_invalid"),
    ("CTX-B", "2026-01-05T11:00:18+01:00", "0.5035", "3", ""),
    ("CTX-A", "2026-01-05T10:00:05Z", "101.6", "2", "ts_duplicate"),
    ("CTX-A", "2026-01-05T09:59:59Z", "101.4", "9", "ts_out_of_order"),
    ("CTX-A", "2026-01-05T10:00:20.5Z", "101.55", "0", ""),
    ('CTX-C, "Inc."', "2026-01-05T10:00:21Z", "7.25", "100", ""),
)


def write_malformed_csv(path: Path) -> None:
    """Valid and invalid tick rows, each naming the reject reason it should get (or none)."""
    _write_csv(path, MALFORMED_HEADER, MALFORMED_ROWS)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m forecaster.evaluation.synthetic",
        description="Write a seeded synthetic tick stream, its oracle and a malformed-tick file.",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument(
        "--ticks-per-series", type=int, default=DEFAULT_TICKS_PER_SERIES, metavar="N"
    )
    parser.add_argument("--series-set", choices=sorted(SERIES_SETS), default="default")
    args = parser.parse_args(argv)
    if args.ticks_per_series < 1:
        parser.error("--ticks-per-series must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    specs = SERIES_SETS[args.series_set]
    ticks = generate(specs, args.ticks_per_series, args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_ticks_csv(ticks, out / "ticks.csv")
    write_oracle_csv(ticks, out / "oracle.csv")
    write_malformed_csv(out / "malformed_ticks.csv")
    print(f"wrote {len(ticks)} ticks of {len(specs)} series to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
