"""Interval scores of the backtest, on replays written by hand (no model, no TensorFlow)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from forecaster.core.intervals import IntervalParams
from forecaster.evaluation import scoring
from forecaster.evaluation.backtest.evaluate import OVERALL, Evaluation, evaluate, retrain_points
from forecaster.evaluation.backtest.interval_baselines import INTERVAL_BASELINES
from forecaster.evaluation.backtest.interval_evaluation import LEVELS
from forecaster.evaluation.backtest.points import ORACLE, load_points
from forecaster.evaluation.backtest.service_intervals import service_bounds
from forecaster.evaluation.synthetic import oracle_interval

N = 500
FIRST_MODEL = 100
PHI, SD = 0.5, 0.01
OWN = 0.85  # the replay's coverage: not one of LEVELS
EMITTED = 0.004  # the replay's own intervals: the forecast -+ 0.4%


def stamp(t: int) -> str:
    return f"2026-01-05T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}.000Z"


def ar1(start: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Prices with AR(1) log returns, and the mean of each next log return."""
    returns = np.zeros(N)
    for t in range(1, N):
        returns[t] = PHI * returns[t - 1] + rng.normal(0, SD)
    return start * np.exp(np.cumsum(returns)), PHI * returns


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    """Two AR(1)-return series forecast by their oracle from FIRST_MODEL on, with intervals in
    the records, and an oracle file with the next log return's mean and sd."""
    rng = np.random.default_rng(0)
    paths = {name: ar1(start, rng) for name, start in (("HIGH", 4000.0), ("LOW", 0.07))}
    records, oracle = [], ["series,ts,kind,oracle,oracle_log_mean,oracle_log_sd"]
    for t in range(N):
        for name, (prices, means) in paths.items():
            price, mean = float(prices[t]), float(means[t])
            best = price * math.exp(mean)
            forecast = best if t >= FIRST_MODEL else price
            records.append({"series": name, "ts": stamp(t), "price": price, "forecast": forecast,
                            "model_version": "m1" if t >= FIRST_MODEL else "naive",
                            "lower": forecast * (1 - EMITTED),
                            "upper": forecast * (1 + EMITTED)})  # fmt: skip
            known = ",," if t == N - 1 else f"{best!r},{mean!r},{SD!r}"
            oracle.append(f"{name},{stamp(t)},ar1,{known}")
    (tmp_path / "lstm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "oracle.csv").write_text("\n".join(oracle) + "\n")
    return tmp_path / "lstm.jsonl", tmp_path / "oracle.csv"


def evaluation_of(files: tuple[Path, Path]) -> Evaluation:
    return evaluate(load_points({"lstm": files[0]}, files[1]), IntervalParams(coverage=OWN))


def relative_to_price(
    evaluation: Evaluation, row: str, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``row``'s lower and upper bounds at ``level`` and the next prices, on the scored
    points, each over the price forecast from."""
    points, rows = evaluation.points, np.flatnonzero(evaluation.scored)
    price = points.price[rows]
    lower, upper = (bound[rows] / price for bound in evaluation.intervals.at(row, level))
    return lower, upper, points.actual[rows] / price


def test_every_row_is_scored_at_every_level_and_the_replays_own(files: tuple[Path, Path]) -> None:
    intervals = evaluation_of(files).intervals
    assert intervals.rows == ["lstm", *INTERVAL_BASELINES, ORACLE]
    assert intervals.levels == tuple(sorted((*LEVELS, OWN)))
    assert set(intervals.per_kind) == {OVERALL, "ar1"}
    for by_level in intervals.per_kind.values():
        assert set(by_level) == set(intervals.levels)
        assert all(set(scores) == set(intervals.rows) for scores in by_level.values())


def test_the_replays_own_intervals_are_scored_at_its_coverage_and_recomputed_at_the_others(
    files: tuple[Path, Path],
) -> None:
    evaluation = evaluation_of(files)
    points, intervals = evaluation.points, evaluation.intervals
    lower, upper = intervals.at("lstm", OWN)
    np.testing.assert_allclose(lower, points.forecasts["lstm"] * (1 - EMITTED), rtol=1e-12)
    np.testing.assert_allclose(upper, points.forecasts["lstm"] * (1 + EMITTED), rtol=1e-12)
    recomputed = service_bounds(points, "lstm", retrain_points(points.versions["lstm"]),
                                IntervalParams(coverage=OWN), (0.9, OWN))  # fmt: skip
    np.testing.assert_array_equal(intervals.at("lstm", 0.9)[0], recomputed[0][0])
    assert not np.allclose(recomputed[0][1], lower)  # the file's are not the calibration's


def test_scores_are_those_of_the_scored_points_relative_to_the_price(
    files: tuple[Path, Path],
) -> None:
    evaluation = evaluation_of(files)
    intervals, rows = evaluation.intervals, np.flatnonzero(evaluation.scored)
    for level in intervals.levels:
        alpha = 1 - level
        for row in intervals.rows:
            lower, upper, relative = relative_to_price(evaluation, row, level)
            outside = np.maximum(lower - relative, 0) + np.maximum(relative - upper, 0)
            scores = intervals.per_kind[OVERALL][level][row]
            assert scores.points == len(rows) == 2 * (N - 1 - FIRST_MODEL)
            inside = (lower <= relative) & (relative <= upper)
            assert scores.coverage == pytest.approx(inside.mean(), abs=1e-12)
            assert scores.width == pytest.approx((upper - lower).mean(), rel=1e-12)
            winkler = (upper - lower + 2 / alpha * outside).mean()
            assert scores.interval_score == pytest.approx(winkler, rel=1e-9)
            assert 2 / alpha * (scores.pinball_lower + scores.pinball_upper) == pytest.approx(
                winkler, rel=1e-9
            )


def test_rows_but_baselines_are_tested_against_the_best_baseline_on_the_same_points(
    files: tuple[Path, Path],
) -> None:
    evaluation = evaluation_of(files)
    intervals, rows = evaluation.intervals, np.flatnonzero(evaluation.scored)
    for level, scores in intervals.per_kind[OVERALL].items():
        assert all(scores[name].versus_best_baseline is None for name in INTERVAL_BASELINES)
        best = min(INTERVAL_BASELINES, key=lambda name: scores[name].interval_score)
        per_point = {}
        for row in ("lstm", best, ORACLE):
            lower, upper, relative = relative_to_price(evaluation, row, level)
            per_point[row] = scoring.interval_scores(lower, upper, relative, 1 - level)
        lags = scoring.newey_west_lags(len(rows))
        for row in ("lstm", ORACLE):
            expected, _ = scoring.diebold_mariano(per_point[row], per_point[best], lags)
            assert scores[row].versus_best_baseline == pytest.approx(expected, rel=1e-12)
        assert scores[ORACLE].versus_best_baseline < 0  # the true interval scores lower


def test_the_oracle_row_is_the_true_interval_and_scores_best(files: tuple[Path, Path]) -> None:
    evaluation = evaluation_of(files)
    points, intervals = evaluation.points, evaluation.intervals
    assert points.oracle_log is not None
    mean, sd = points.oracle_log
    for level in intervals.levels:
        expected = oracle_interval(points.price, mean, sd, level)
        np.testing.assert_array_equal(intervals.at(ORACLE, level)[0], expected[0])
        scores = intervals.per_kind[OVERALL][level]
        assert scores[ORACLE].interval_score < min(
            scores[name].interval_score for name in INTERVAL_BASELINES
        )


def test_without_the_oracles_law_there_is_no_oracle_row(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    """An oracle file of the former format, or one whose law is missing at a scored point."""
    replay, oracle = files
    lines = oracle.read_text().splitlines()
    former = tmp_path / "former.csv"
    former.write_text("\n".join(",".join(line.split(",")[:4]) for line in lines) + "\n")
    assert ORACLE not in evaluate(load_points({"lstm": replay}, former)).intervals.rows
    gap = tmp_path / "gap.csv"
    late = 1 + 2 * (FIRST_MODEL + 10)  # a scored point's row, after the header
    lines[late] = ",".join(lines[late].split(",")[:4]) + ",,"
    gap.write_text("\n".join(lines) + "\n")
    evaluation = evaluate(load_points({"lstm": replay}, gap))
    assert ORACLE not in evaluation.intervals.rows and ORACLE in evaluation.rows


def test_records_without_intervals_get_the_calibrations_at_every_level(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    replay, oracle = files
    plain = tmp_path / "plain.jsonl"
    records = [json.loads(line) for line in replay.read_text().splitlines()]
    plain.write_text("".join(json.dumps({key: record[key] for key in list(record)[:5]}) + "\n"
                             for record in records))  # fmt: skip
    points = load_points({"lstm": plain}, oracle)
    assert points.bounds == {}
    intervals = evaluate(points, IntervalParams(coverage=OWN)).intervals
    recomputed = service_bounds(points, "lstm", retrain_points(points.versions["lstm"]),
                                IntervalParams(coverage=OWN), (OWN,))  # fmt: skip
    np.testing.assert_array_equal(intervals.at("lstm", OWN)[1], recomputed[1][0])
