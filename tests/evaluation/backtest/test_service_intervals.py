"""The service's intervals recomputed offline: the replay's own, causal, one level at a time."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from forecaster.config import Settings
from forecaster.core.engine import NAIVE
from forecaster.core.intervals import IntervalParams
from forecaster.evaluation import synthetic
from forecaster.evaluation.backtest.evaluate import retrain_points
from forecaster.evaluation.backtest.points import Points, load_points
from forecaster.evaluation.backtest.service_intervals import service_bounds
from forecaster.params import interval_params
from forecaster.service import replay

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
N = 400


def points_of(prices: dict[str, np.ndarray], forecasts: dict[str, np.ndarray],
              versions: list[str]) -> Points:  # fmt: skip
    """Series interleaved tick by tick, every series with the same versions."""
    names = list(prices)
    series = [name for _ in range(N) for name in names]
    price = np.array([prices[name][t] for t in range(N) for name in names])
    forecast = np.array([forecasts[name][t] for t in range(N) for name in names])
    position = np.repeat(np.arange(N), len(names))
    stamps = [f"t{i}" for i in range(len(series))]
    cell_versions = [versions[t] for t in position.tolist()]
    return Points(series, stamps, price, np.full(len(series), np.nan), position,
                  {"cell": forecast}, {"cell": cell_versions})  # fmt: skip


def walks(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: start * np.exp(np.cumsum(rng.normal(0, 0.01, N)))
            for name, start in (("A", 100.0), ("B", 0.5))}  # fmt: skip


def bounds(points: Points, levels: tuple[float, ...] = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    return service_bounds(points, "cell", retrain_points(points.versions["cell"]),
                          IntervalParams(), levels)  # fmt: skip


def test_a_naive_replay_gets_back_exactly_the_intervals_it_emitted(tmp_path: Path) -> None:
    """No model ever trains here (the replay of a model is in test_backtest): every interval
    is naive's, recomputed to the last bit at the service's coverage."""
    specs = synthetic.SERIES_SETS["garch"] + synthetic.SERIES_SETS["ar1"]
    synthetic.write_ticks_csv(synthetic.generate(specs, 300, seed=3), tmp_path / "ticks.csv")
    settings = Settings(bootstrap_steps=10**9, interval_coverage=0.8, metrics_port=0)
    replay(settings, tmp_path / "ticks.csv", tmp_path / "f.jsonl", str(tmp_path / "r.jsonl"))
    points = load_points({"cell": tmp_path / "f.jsonl"})
    params = interval_params(settings)
    lower, upper = service_bounds(points, "cell", np.zeros(0, np.int64), params, (0.8,))
    emitted_lower, emitted_upper = points.bounds["cell"]
    assert len(points) == 20 * 300
    np.testing.assert_allclose(lower[0], emitted_lower, rtol=1e-9, atol=0)
    np.testing.assert_allclose(upper[0], emitted_upper, rtol=1e-9, atol=0)


def test_an_interval_depends_on_no_later_tick_nor_on_the_other_levels() -> None:
    prices = walks(1)
    versions = [NAIVE] * 100 + ["m1"] * (N - 100)
    points = points_of(prices, {name: p * 1.001 for name, p in prices.items()}, versions)
    lower, upper = bounds(points)
    changed = points.price.copy()
    changed[500:] *= 1.3
    later_lower, later_upper = bounds(replace(points, price=changed))
    np.testing.assert_array_equal(lower[:, :500], later_lower[:, :500])
    np.testing.assert_array_equal(upper[:, :500], later_upper[:, :500])
    alone = bounds(points, (0.9,))
    np.testing.assert_array_equal(alone[0][0], lower[2])
    np.testing.assert_array_equal(alone[1][0], upper[2])
    # Levels are calibrated apart, each by whichever of its experts scores best, so a
    # level may pick a wider one than the next level does: rare, not never.
    nested = (np.diff(upper, axis=0) > 0) & (np.diff(lower, axis=0) < 0)
    assert nested.mean() > 0.99


def test_a_new_model_starts_from_the_naive_calibration() -> None:
    """m1 forecasts 5% off, so its calibration is wide; m2 forecasts the last price. Right
    after m2's first tick its intervals are near naive's width (m1's last miss is scored
    into m2's calibration, as the engine does), where without the restart they would stay
    as wide as m1's for a while."""
    prices = walks(2)
    versions = [NAIVE] * 50 + ["m1"] * 150 + ["m2"] * (N - 200)
    forecasts = {name: np.where(np.arange(N) < 200, p * 1.05, p) for name, p in prices.items()}
    points = points_of(prices, forecasts, versions)
    m2_starts = retrain_points(points.versions["cell"])[1:]
    restarted = service_bounds(points, "cell", m2_starts, IntervalParams(), (0.9,))
    kept = service_bounds(points, "cell", np.zeros(0, np.int64), IntervalParams(), (0.9,))
    naive = bounds(points_of(prices, prices, [NAIVE] * N), (0.9,))
    soon = points.position == 201

    def width(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return np.log(pair[1][0][soon] / pair[0][0][soon])

    assert (width(restarted) < 1.6 * width(naive)).all()
    assert (width(kept) > 3.0 * width(naive)).all()
    before = points.position < 200
    np.testing.assert_array_equal(restarted[0][0][before], kept[0][0][before])


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_naive_intervals_cover_nominal_on_a_random_walk(coverage: float) -> None:
    """The calibration's promise, seen through the offline run: coverage of the next price
    within a point of nominal."""
    rng = np.random.default_rng(4)
    prices = {f"S{i}": 10.0 * np.exp(np.cumsum(rng.normal(0, 0.002 * (i + 1), N)))
              for i in range(25)}  # fmt: skip
    points = points_of(prices, prices, [NAIVE] * N)
    lower, upper = bounds(points, (coverage,))
    rows = np.flatnonzero(points.position < N - 1)
    following = rows + len(prices)  # the same series' next tick
    inside = (lower[0][rows] <= points.price[following]) & (
        points.price[following] <= upper[0][rows]
    )
    assert inside.mean() == pytest.approx(coverage, abs=0.01)
