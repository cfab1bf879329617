"""Interval scores on hand-made intervals with known answers."""

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
