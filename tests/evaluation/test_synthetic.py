"""Tests of the synthetic tick generator and the sample data committed from it."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.evaluation import synthetic
from forecaster.evaluation.synthetic import (
    DEFAULT_SERIES,
    SERIES_SETS,
    FloatArray,
    IntArray,
    SeriesSpec,
    Ticks,
    generate,
    oracle_interval,
)
from tests.support.paths import SAMPLE_DATA

SAMPLE_FILES = ("ticks.csv", "oracle.csv", "malformed_ticks.csv")
REBUILD_COMMAND = "python -m forecaster.evaluation.synthetic --seed 7 --out sample_data"
CSV_REACHABLE_REASONS = {
    "missing_series",
    "missing_ts",
    "missing_price",
    "series_length",
    "ts_format",
    "ts_no_timezone",
    "ts_out_of_range",
    "price_type",
    "price_not_finite",
    "price_not_positive",
    "volume_type",
    "volume_invalid",
    "ts_duplicate",
    "ts_out_of_order",
}
RFC3339_MS_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
RFC3339_NO_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?")
COVERAGES = (0.8, 0.9, 0.95)  # the levels the backtest reports
LONG_STREAM = 200_000  # ticks: a coverage off by 1 point is 15 standard errors away
GARCH = SeriesSpec("GA-LONG", "garch", 71.84, 0.002, 0.08, beta=0.9)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample data freshly written by the generator, which the tests below examine."""
    out = tmp_path_factory.mktemp("sample_data")
    assert synthetic.main(["--seed", "7", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def sample(regenerated: Path) -> pd.DataFrame:
    """The regenerated ticks joined with their oracle, one row per tick."""
    ticks = pd.read_csv(regenerated / "ticks.csv")
    oracle = pd.read_csv(regenerated / "oracle.csv")
    assert (ticks[["series", "ts"]] == oracle[["series", "ts"]]).all().all()
    return ticks.assign(
        kind=oracle["kind"],
        oracle=oracle["oracle"],
        log_mean=oracle["oracle_log_mean"],
        log_sd=oracle["oracle_log_sd"],
    )


def per_series(ticks: Ticks) -> dict[str, dict[str, np.ndarray]]:
    names = np.array(ticks.series)
    paths = {}
    for name in dict.fromkeys(ticks.series):
        mine = names == name
        paths[name] = {
            "ts_ms": ticks.ts_ms[mine],
            "price": ticks.price[mine],
            "oracle": ticks.oracle[mine],
        }
    return paths


def lag1_autocorrelation(ticks: Ticks) -> float:
    """Lag-1 autocorrelation of log-returns, pooled over series (each demeaned on its own)."""
    pairs = []
    for path in per_series(ticks).values():
        returns = np.diff(np.log(path["price"]))
        returns -= returns.mean()
        pairs.append(np.stack([returns[:-1], returns[1:]]))
    lagged, following = np.concatenate(pairs, axis=1)
    return float(np.sum(lagged * following) / np.sqrt(np.sum(lagged**2) * np.sum(following**2)))


def squared_autocorrelation(values: FloatArray, lag: int = 1) -> float:
    """Autocorrelation of ``values**2`` at ``lag``: positive where large moves follow large ones."""
    squares = values**2 - np.mean(values**2)
    return float(np.sum(squares[:-lag] * squares[lag:]) / np.sum(squares**2))


def hits(lower: FloatArray, upper: FloatArray, actual: FloatArray) -> FloatArray:
    return ((lower <= actual) & (actual <= upper)).astype(np.float64)


@pytest.fixture(scope="module")
def long_garch() -> Ticks:
    return generate([GARCH], LONG_STREAM, seed=12)


def test_regenerating_seed_7_reproduces_the_committed_sample_data(regenerated: Path) -> None:
    for name in SAMPLE_FILES:
        assert (regenerated / name).read_bytes() == (SAMPLE_DATA / name).read_bytes(), name


def test_a_different_seed_gives_a_different_stream() -> None:
    first = generate(DEFAULT_SERIES[:2], 50, seed=1)
    second = generate(DEFAULT_SERIES[:2], 50, seed=2)
    assert not np.array_equal(first.price, second.price)
    assert not np.array_equal(first.ts_ms, second.ts_ms)


def test_sample_data_has_the_promised_size_and_format(
    regenerated: Path, sample: pd.DataFrame
) -> None:
    assert len(sample) >= 60_000
    assert sample["series"].nunique() >= 12
    assert (regenerated / "ticks.csv").stat().st_size < 10_000_000
    assert sample["ts"].map(lambda ts: RFC3339_MS_UTC.fullmatch(ts) is not None).all()
    assert sample["price"].min() > 0
    assert ((sample["volume"] >= 1) & (sample["volume"] == sample["volume"].round())).all()


def test_random_walk_returns_are_uncorrelated_and_the_oracle_is_the_price() -> None:
    ticks = generate(SERIES_SETS["random_walk"], 3000, seed=11)
    assert abs(lag1_autocorrelation(ticks)) < 0.03
    for path in per_series(ticks).values():
        np.testing.assert_array_equal(path["oracle"][:-1], path["price"][:-1])
        assert math.isnan(path["oracle"][-1])


def test_ar1_returns_have_lag1_autocorrelation_phi() -> None:
    ticks = generate(SERIES_SETS["ar1"], 3000, seed=4)
    assert lag1_autocorrelation(ticks) == pytest.approx(0.5, abs=0.03)


def test_timestamps_strictly_increase_per_series_and_merge_in_time_then_name_order() -> None:
    # 5 ms mean gaps make ties between series common, so the tie-break is exercised.
    specs = [SeriesSpec(name, "random_walk", 10.0, 0.001, mean_interval_s=0.005) for name in "CAB"]
    ticks = generate(specs, 2000, seed=5)
    for path in per_series(ticks).values():
        assert np.all(np.diff(path["ts_ms"]) > 0)
    keys = list(zip(ticks.ts_ms.tolist(), ticks.series, strict=True))
    assert keys == sorted(keys)
    assert len(keys) - len({ts for ts, _ in keys}) > 100  # ties did occur


def test_mean_inter_arrival_time_matches_the_spec() -> None:
    specs = [SeriesSpec("FAST", "random_walk", 1.0, 0.001, mean_interval_s=30.0)]
    ticks = generate(specs, 5000, seed=9, start="2026-01-05T00:00:00Z")
    gaps_s = np.diff(ticks.ts_ms) / 1000.0
    assert gaps_s.mean() == pytest.approx(30.0, rel=0.05)
    assert ticks.ts_ms[0] > datetime.fromisoformat("2026-01-05T00:00:00Z").timestamp() * 1000


def test_every_emitted_price_has_at_most_six_significant_digits() -> None:
    ticks = generate(DEFAULT_SERIES, 300, seed=8)
    assert all(float(f"{price:.5e}") == price for price in ticks.price.tolist())


def epoch_ms_of(ts: pd.Series) -> IntArray:
    """``...Z`` timestamps as epoch milliseconds."""
    return np.array(ts.str.removesuffix("Z").tolist(), dtype="datetime64[ms]").astype(np.int64)


def expected_log_sd(spec: SeriesSpec, price: FloatArray) -> FloatArray:
    """The sd of the next log-return at every tick but the last, from the emitted prices."""
    if spec.kind != "garch":
        return np.full(len(price) - 1, spec.volatility)
    base = spec.volatility**2 * (1 - spec.param - spec.beta)
    variance = [spec.volatility**2]
    for last_return in np.diff(np.log(price))[:-1].tolist():
        variance.append(base + spec.param * last_return**2 + spec.beta * variance[-1])
    return np.sqrt(variance)


def expected_oracle(spec: SeriesSpec, ts_ms: IntArray, price: FloatArray) -> FloatArray:
    """The oracle of every tick but the last, recomputed from the emitted prices and times."""
    now, log_price = price[:-1], np.log(price[:-1])
    if spec.kind == "ar1":
        last_return = np.diff(np.log(price), prepend=log_price[0])[:-1]
        return now * np.exp(spec.param * last_return)
    if spec.kind == "mean_reversion":
        mu = math.log(spec.start_price)
        return np.exp(log_price + spec.param * (mu - log_price))
    if spec.kind == "intraday":
        time_of_day = (ts_ms[:-1] % 86_400_000) / 86_400_000
        return now * np.exp(spec.param * np.sin(2 * np.pi * time_of_day))
    return now


@pytest.mark.parametrize("spec", DEFAULT_SERIES, ids=lambda spec: spec.name)
def test_sample_oracle_follows_the_process_formula(sample: pd.DataFrame, spec: SeriesSpec) -> None:
    rows = sample[sample["series"] == spec.name]
    assert (rows["kind"] == spec.kind).all()
    price = rows["price"].to_numpy()
    oracle = rows["oracle"].to_numpy()
    expected = expected_oracle(spec, epoch_ms_of(rows["ts"]), price)
    np.testing.assert_allclose(oracle[:-1], expected, rtol=1e-9)
    assert math.isnan(oracle[-1])
    # What the oracle leaves unexplained is the process noise: N(0, volatility).
    surprise = np.log(price[1:] / oracle[:-1])
    assert surprise.std() == pytest.approx(spec.volatility, rel=0.05)
    assert abs(surprise.mean()) < 4 * spec.volatility / math.sqrt(len(surprise))
    # The oracle's log-return distribution: its mean is the oracle's, its sd the process's.
    log_mean, log_sd = rows["log_mean"].to_numpy(), rows["log_sd"].to_numpy()
    np.testing.assert_allclose(log_mean[:-1], np.log(expected / price[:-1]), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(log_sd[:-1], expected_log_sd(spec, price), rtol=1e-9)
    assert math.isnan(log_mean[-1]) and math.isnan(log_sd[-1])
    standardised = (np.diff(np.log(price)) - log_mean[:-1]) / log_sd[:-1]
    assert standardised.std() == pytest.approx(1.0, rel=0.05)


def test_garch_returns_cluster_volatility_which_the_oracle_sd_explains(long_garch: Ticks) -> None:
    returns = np.diff(np.log(long_garch.price))
    # GARCH(1,1) with alpha 0.08, beta 0.9: lag-1 autocorrelation of squares 0.205, lag 10 0.17.
    assert squared_autocorrelation(returns) > 0.1
    assert squared_autocorrelation(returns, lag=10) > 0.05
    standardised = (returns - long_garch.log_mean[:-1]) / long_garch.log_sd[:-1]
    assert abs(squared_autocorrelation(standardised)) < 0.02
    assert np.ptp(long_garch.log_sd[:-1]) > GARCH.volatility


def test_constant_volatility_returns_do_not_cluster() -> None:
    ticks = generate(
        [replace(GARCH, kind="random_walk", param=0.0, beta=0.0)], LONG_STREAM, seed=12
    )
    returns = np.diff(np.log(ticks.price))
    assert abs(squared_autocorrelation(returns)) < 0.02
    assert abs(squared_autocorrelation(returns, lag=10)) < 0.02
    assert np.all(ticks.log_sd[:-1] == GARCH.volatility)


@pytest.mark.parametrize("coverage", COVERAGES)
def test_oracle_interval_covers_the_next_garch_price_at_its_nominal_rate(
    long_garch: Ticks, coverage: float
) -> None:
    lower, upper = oracle_interval(
        long_garch.price[:-1], long_garch.log_mean[:-1], long_garch.log_sd[:-1], coverage
    )
    assert hits(lower, upper, long_garch.price[1:]).mean() == pytest.approx(coverage, abs=0.01)
    assert np.all(lower < long_garch.price[:-1]) and np.all(long_garch.price[:-1] < upper)


def test_oracle_interval_covers_every_sample_kind_at_its_nominal_rate(sample: pd.DataFrame) -> None:
    for kind, rows in sample.groupby("kind"):
        covered: dict[float, list[FloatArray]] = {coverage: [] for coverage in COVERAGES}
        for _, series in rows.groupby("series"):
            price = series["price"].to_numpy()
            for coverage, hit_lists in covered.items():
                lower, upper = oracle_interval(
                    price[:-1],
                    series["log_mean"].to_numpy()[:-1],
                    series["log_sd"].to_numpy()[:-1],
                    coverage,
                )
                hit_lists.append(hits(lower, upper, price[1:]))
        for coverage, hit_lists in covered.items():
            rate = np.concatenate(hit_lists).mean()
            assert rate == pytest.approx(coverage, abs=0.01), (kind, coverage)


def test_oracle_interval_needs_a_coverage_strictly_between_0_and_1() -> None:
    for coverage in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="coverage"):
            oracle_interval(1.0, 0.0, 0.01, coverage)


def test_garch_parameters_must_keep_the_variance_finite() -> None:
    with pytest.raises(ValueError, match="alpha \\+ beta < 1"):
        SeriesSpec("X", "garch", 1.0, 0.001, 0.2, beta=0.8)
    with pytest.raises(ValueError, match="garch parameter"):
        SeriesSpec("X", "random_walk", 1.0, 0.001, beta=0.9)


def test_oracle_beats_naive_on_ar1_by_sqrt_one_minus_phi_squared(tmp_path: Path) -> None:
    argv = ["--seed", "3", "--out", str(tmp_path), "--series-set", "ar1"]
    assert synthetic.main([*argv, "--ticks-per-series", "3000"]) == 0
    ticks = pd.read_csv(tmp_path / "ticks.csv")
    ticks["oracle"] = pd.read_csv(tmp_path / "oracle.csv")["oracle"]
    oracle_errors, naive_errors = [], []
    for _, rows in ticks.groupby("series"):
        price, oracle = rows["price"].to_numpy(), rows["oracle"].to_numpy()
        # Relative errors, so that series at 4000 do not drown those at 0.07.
        oracle_errors.append(np.abs(price[1:] - oracle[:-1]) / price[:-1])
        naive_errors.append(np.abs(price[1:] - price[:-1]) / price[:-1])
    ratio = np.concatenate(oracle_errors).mean() / np.concatenate(naive_errors).mean()
    assert ratio == pytest.approx(math.sqrt(1 - 0.5**2), abs=0.02)


def read_malformed(directory: Path) -> list[dict[str, str]]:
    with (directory / "malformed_ticks.csv").open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_malformed_file_covers_every_reason_and_has_valid_rows(regenerated: Path) -> None:
    rows = read_malformed(regenerated)
    assert set(rows[0]) == {"series", "ts", "price", "volume", "expected_reason"}
    assert {row["expected_reason"] for row in rows} - {""} == CSV_REACHABLE_REASONS
    valid = [row for row in rows if row["expected_reason"] == ""]
    assert sum(row["series"] in {"CTX-A", "CTX-B"} for row in valid) >= 5
    assert any("," in row["series"] for row in valid)
    assert '"' in (regenerated / "malformed_ticks.csv").read_text(encoding="utf-8")


def ts_failures(ts: str) -> list[str]:
    if ts.isdigit():
        return [] if int(ts) <= 9_000_000_000_000 else ["ts_out_of_range"]
    if RFC3339.fullmatch(ts):
        try:
            datetime.fromisoformat(ts)
        except ValueError:
            return ["ts_format"]
        return []
    return ["ts_no_timezone" if RFC3339_NO_ZONE.fullmatch(ts) else "ts_format"]


def price_failures(text: str) -> list[str]:
    try:
        value = float(text)
    except ValueError:
        return ["price_type"]
    if not math.isfinite(value):
        return ["price_not_finite"]
    return [] if value > 0 else ["price_not_positive"]


def volume_failures(text: str) -> list[str]:
    try:
        value = float(text)
    except ValueError:
        return ["volume_type"]
    return [] if math.isfinite(value) and value >= 0 else ["volume_invalid"]


def field_failures(row: dict[str, str]) -> list[str]:
    """Every field rule the row breaks (not just the first)."""
    failures = [f"missing_{name}" for name in ("series", "ts", "price") if row[name] == ""]
    if len(row["series"]) > 200:
        failures.append("series_length")
    if row["ts"]:
        failures += ts_failures(row["ts"])
    if row["price"]:
        failures += price_failures(row["price"])
    if row["volume"]:
        failures += volume_failures(row["volume"])
    return failures


def epoch_ms(ts: str) -> int:
    return int(ts) if ts.isdigit() else round(datetime.fromisoformat(ts).timestamp() * 1000)


def test_each_malformed_row_breaks_exactly_its_expected_rule(regenerated: Path) -> None:
    last_accepted: dict[str, int] = {}
    for number, row in enumerate(read_malformed(regenerated), start=2):
        failures = field_failures(row)
        if not failures and row["series"] in last_accepted:
            previous, ts = last_accepted[row["series"]], epoch_ms(row["ts"])
            failures = ["ts_duplicate"] if ts == previous else []
            failures += ["ts_out_of_order"] if ts < previous else []
        if not failures:
            last_accepted[row["series"]] = epoch_ms(row["ts"])
        expected = [row["expected_reason"]] if row["expected_reason"] else []
        assert failures == expected, f"line {number}: {row}"


def test_readme_lists_every_default_series_and_the_rebuild_command() -> None:
    readme = (SAMPLE_DATA / "README.md").read_text(encoding="utf-8")
    assert REBUILD_COMMAND in readme
    for spec in DEFAULT_SERIES:
        assert re.search(rf"\|\s*`?{re.escape(spec.name)}`?\s*\|\s*{spec.kind}\s*\|", readme)
