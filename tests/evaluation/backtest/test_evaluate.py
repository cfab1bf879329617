"""Scoring rules of the backtest, on forecasts written by hand (no model, no TensorFlow)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from forecaster.evaluation import scoring
from forecaster.evaluation.backtest.evaluate import MIN_TUNE, OVERALL, evaluate, retrain_points
from forecaster.evaluation.backtest.points import load_points

N = 400  # ticks per series
FIRST_MODEL = 120  # the tick from which the "model" forecasts


def write_replay(path: Path, forecast_of: dict[str, np.ndarray], prices: dict[str, np.ndarray],
                 versions: list[str]) -> None:  # fmt: skip
    """Forecast records as the service writes them, series interleaved tick by tick."""
    with path.open("w") as file:
        for t in range(N):
            for name, series_prices in prices.items():
                record = {"series": name, "ts": f"2026-01-05T00:{t // 60:02d}:{t % 60:02d}.000Z",
                          "price": float(series_prices[t]), "forecast": float(forecast_of[name][t]),
                          "model_version": versions[t]}  # fmt: skip
                file.write(json.dumps(record) + "\n")


@pytest.fixture()
def replay_files(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """An AR(1)-return series at 4000 and one at 0.07, forecast by their exact oracle."""
    rng = np.random.default_rng(0)
    prices, oracle = {}, {}
    for name, start in (("HIGH", 4000.0), ("LOW", 0.07)):
        returns = np.zeros(N)
        for t in range(1, N):
            returns[t] = 0.5 * returns[t - 1] + rng.normal(0, 0.01)
        prices[name] = start * np.exp(np.cumsum(returns))
        oracle[name] = prices[name] * np.exp(0.5 * returns)
    versions = ["naive"] * FIRST_MODEL + ["m1"] * 150 + ["m2"] * (N - FIRST_MODEL - 150)
    model = {name: np.where(np.arange(N) < FIRST_MODEL, prices[name], oracle[name])
             for name in prices}  # fmt: skip
    write_replay(tmp_path / "cell.jsonl", model, prices, versions)
    with (tmp_path / "oracle.csv").open("w") as file:
        file.write("series,ts,kind,oracle\n")
        for t in range(N):
            for name in prices:
                value = "" if t == N - 1 else repr(float(oracle[name][t]))
                file.write(f"{name},2026-01-05T00:{t // 60:02d}:{t % 60:02d}.000Z,ar1,{value}\n")
    return tmp_path / "cell.jsonl", tmp_path / "oracle.csv", prices


def test_scores_are_those_of_the_points_after_the_first_model_forecast(
    replay_files: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    forecasts, oracle, prices = replay_files
    evaluation = evaluate(load_points({"lstm": forecasts}, oracle))

    assert set(evaluation.rows) == {"lstm", "naive", "drift", "ewma", "holt", "oracle"}
    for name, series_prices in prices.items():
        actual = series_prices[FIRST_MODEL + 1 :]
        naive = series_prices[FIRST_MODEL:-1]
        scores = evaluation.per_series[name]
        assert scores["naive"].points == N - 1 - FIRST_MODEL
        assert scores["naive"].mae == pytest.approx(np.abs(naive - actual).mean(), rel=1e-12)
        assert scores["naive"].mase == 1.0
        # The "model" here is the oracle itself: identical rows, better than naive, significant.
        assert scores["lstm"] == scores["oracle"]
        assert scores["lstm"].mase < 0.95 and scores["lstm"].dm_stat < -1.96
    overall = evaluation.per_kind[OVERALL]
    assert overall["lstm"].points == 2 * (N - 1 - FIRST_MODEL)
    assert set(evaluation.per_kind) == {OVERALL, "ar1"}


def test_overall_errors_are_relative_so_every_price_level_weighs_alike(
    replay_files: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    forecasts, oracle, prices = replay_files
    overall = evaluate(load_points({"lstm": forecasts}, oracle)).per_kind[OVERALL]
    relative = np.concatenate([np.abs(p[FIRST_MODEL:-1] - p[FIRST_MODEL + 1 :]) / p[FIRST_MODEL:-1]
                               for p in prices.values()])  # fmt: skip
    assert overall["naive"].mae == pytest.approx(relative.mean(), rel=1e-12)


def test_retrain_events_are_where_a_new_version_takes_over(
    replay_files: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    forecasts, oracle, _ = replay_files
    evaluation = evaluate(load_points({"lstm": forecasts}, oracle))
    versions = evaluation.points.versions["lstm"]
    events = evaluation.retrains["lstm"].tolist()
    assert [versions[i] for i in events] == ["m1", "m2"]
    assert [versions[i - 1] for i in events] == ["naive", "m1"]
    assert retrain_points(["m1", "naive", "m1"]).tolist() == [0]


def test_the_tuning_part_is_never_scored(tmp_path: Path) -> None:
    """A model serving from the first tick still leaves MIN_TUNE ticks for the baselines."""
    prices = {"A": 10.0 + np.arange(N) * 0.01}
    write_replay(tmp_path / "f.jsonl", {"A": prices["A"] * 1.001}, prices, ["m1"] * N)
    evaluation = evaluate(load_points({"gru": tmp_path / "f.jsonl"}))
    assert evaluation.per_series["A"]["gru"].points == N - 1 - MIN_TUNE
    assert "oracle" not in evaluation.rows


def test_diebold_mariano_calls_equal_forecasts_equal() -> None:
    rng = np.random.default_rng(1)
    loss_a, loss_b = np.abs(rng.normal(size=4000)), np.abs(rng.normal(size=4000))
    stat, p_value = scoring.diebold_mariano(loss_a, loss_b)
    assert abs(stat) < 3.5 and p_value > 1e-3
    assert scoring.diebold_mariano(loss_a, loss_a) == (0.0, 1.0)
    assert all(math.isnan(v) for v in scoring.diebold_mariano(loss_a[:1], loss_b[:1]))


def test_two_cells_are_scored_on_the_same_points(
    replay_files: tuple[Path, Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """A GRU replay that fell back to naive at a tick removes that tick for both cells."""
    forecasts, oracle, _ = replay_files
    lines = forecasts.read_text().splitlines()
    late = 2 * (FIRST_MODEL + 10)  # series HIGH's tick FIRST_MODEL + 10
    record = json.loads(lines[late])
    lines[late] = json.dumps({**record, "model_version": "naive", "forecast": record["price"]})
    (tmp_path / "gru.jsonl").write_text("\n".join(lines) + "\n")
    evaluation = evaluate(load_points({"lstm": forecasts, "gru": tmp_path / "gru.jsonl"}, oracle))
    assert evaluation.cells == ["lstm", "gru"]
    high = evaluation.per_series["HIGH"]
    assert high["lstm"].points == high["gru"].points == N - 2 - FIRST_MODEL
    assert high["lstm"] == high["gru"] == high["oracle"]
