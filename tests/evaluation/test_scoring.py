"""Scores on hand-made cases with known answers: interval scores, the Diebold-Mariano test."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from forecaster.evaluation import scoring


def winkler_by_hand(lower: float, upper: float, actual: float, alpha: float) -> float:
    """The interval score's definition, one point at a time."""
    score = upper - lower
    if actual < lower:
        score += 2.0 / alpha * (lower - actual)
    if actual > upper:
        score += 2.0 / alpha * (actual - upper)
    return score


def test_the_interval_score_of_a_known_interval_is_its_definition() -> None:
    """[9, 11] at 80%: width 2 inside; 2 + (2 / 0.2) * 1.5 = 17 when 7.5 comes; 2 + 10 * 0.5
    when 11.5 does."""
    lower, upper = np.full(3, 9.0), np.full(3, 11.0)
    actual = np.array([10.0, 7.5, 11.5])
    assert [winkler_by_hand(9.0, 11.0, a, 0.2) for a in actual] == [2.0, 17.0, 7.0]
    assert scoring.interval_score(lower, upper, actual, alpha=0.2) == pytest.approx(26.0 / 3)
    assert scoring.coverage(lower, upper, actual) == pytest.approx(1 / 3)
    assert scoring.mean_width(lower, upper) == 2.0


@pytest.mark.parametrize("alpha", [0.5, 0.2, 0.1, 0.05, 0.01])
def test_the_interval_score_is_2_over_alpha_times_the_bounds_pinball_losses(alpha: float) -> None:
    rng = np.random.default_rng(1)
    actual = rng.normal(size=5000)
    centre = rng.normal(scale=0.3, size=5000)
    half = rng.uniform(0.1, 2.0, size=5000)
    lower, upper = centre - half, centre + half
    by_hand = np.mean(
        [winkler_by_hand(*point, alpha) for point in zip(lower, upper, actual, strict=True)]
    )
    below, above = scoring.pinball_losses(lower, upper, actual, alpha)
    assert scoring.interval_score(lower, upper, actual, alpha) == pytest.approx(by_hand, rel=1e-12)
    assert 2.0 / alpha * (below + above) == pytest.approx(by_hand, rel=1e-12)
    # The lower bound's loss is that of the alpha / 2 quantile, by hand:
    miss = actual - lower
    pinball = np.mean(np.where(miss >= 0, alpha / 2 * miss, (alpha / 2 - 1) * miss))
    assert below == pytest.approx(pinball, rel=1e-12)


def test_the_true_quantiles_score_better_than_any_other_interval() -> None:
    """A proper score: on Gaussian draws the true central interval beats a narrower and a
    wider one, and covers its nominal share."""
    actual = np.random.default_rng(2).normal(size=200_000)
    z = NormalDist().inv_cdf(0.95)

    def score(half: float) -> float:
        return scoring.interval_score(np.full_like(actual, -half), np.full_like(actual, half),
                                      actual, alpha=0.1)  # fmt: skip

    assert score(z) < min(score(0.8 * z), score(1.2 * z))
    assert scoring.coverage(-z + 0 * actual, z + 0 * actual, actual) == pytest.approx(
        0.9, abs=0.003
    )


def test_the_diebold_mariano_statistic_of_a_case_worked_by_hand() -> None:
    # d = 1, 2, 3, 4: mean 2.5; deviations -1.5, -0.5, 0.5, 1.5; sample variance 5 / 3;
    # lag-1 autocovariance (0.75 - 0.25 + 0.75) / 4 = 0.3125, Bartlett weight 1/2:
    # long-run variance 5/3 + 0.3125, statistic 2.5 / sqrt(that / 4).
    loss, reference = np.array([3.0, 5.0, 7.0, 9.0]), np.array([2.0, 3.0, 4.0, 5.0])
    by_hand = 2.5 / math.sqrt((5 / 3 + 0.3125) / 4)
    stat, p_value = scoring.diebold_mariano(loss, reference, lags=1)
    assert stat == pytest.approx(by_hand) and p_value == pytest.approx(
        math.erfc(by_hand / math.sqrt(2))
    )
    plain, _ = scoring.diebold_mariano(loss, reference)  # no lags: the plain statistic
    assert plain == pytest.approx(2.5 / math.sqrt(5 / 3 / 4))
    assert scoring.diebold_mariano(reference, loss, lags=1)[0] == pytest.approx(-by_hand)


def test_autocorrelated_differences_widen_the_newey_west_variance() -> None:
    rng = np.random.default_rng(2)
    d = np.convolve(rng.normal(size=2000), np.ones(5), mode="valid")  # MA(4): correlated
    lags = scoring.newey_west_lags(len(d))
    assert scoring.long_run_variance(d, lags) > 2 * scoring.long_run_variance(d, 0)


def test_equal_accuracy_is_called_better_one_sided_at_about_the_level_tested() -> None:
    rng = np.random.default_rng(5)
    calls = []
    for _ in range(400):
        loss, reference = np.abs(rng.normal(size=300)), np.abs(rng.normal(size=300))
        stat, _ = scoring.diebold_mariano(loss, reference, scoring.newey_west_lags(300))
        calls.append(0.5 * math.erfc(-stat / math.sqrt(2)) < 0.05)
    assert 0.025 <= np.mean(calls) <= 0.085  # a 5 % test; 400 trials have an sd of 1.1 %
