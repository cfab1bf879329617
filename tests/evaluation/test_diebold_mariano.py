"""The Diebold-Mariano test against cases worked by hand and its size under equal accuracy."""

import math

import numpy as np
import pytest

from forecaster.evaluation.diebold_mariano import (
    default_lags,
    diebold_mariano,
    long_run_variance,
)


def test_a_case_worked_by_hand() -> None:
    # d = 1, 2, 3, 4: mean 2.5; deviations -1.5, -0.5, 0.5, 1.5; gamma0 = 5 / 4 = 1.25,
    # gamma1 = (0.75 - 0.25 + 0.75) / 4 = 0.3125; Bartlett weight of lag 1 of 1: 1/2,
    # so lrv = 1.25 + 2 * 0.5 * 0.3125 = 1.5625 and DM = 2.5 / sqrt(1.5625 / 4) = 4.
    loss_a, loss_b = np.array([3.0, 5.0, 7.0, 9.0]), np.array([2.0, 3.0, 4.0, 5.0])
    assert long_run_variance(loss_a - loss_b, lags=1) == pytest.approx(1.5625)
    test = diebold_mariano(loss_a, loss_b, lags=1)
    assert test.statistic == pytest.approx(4.0) and test.points == 4 and test.lags == 1
    assert test.p_value == pytest.approx(0.5 * math.erfc(-4.0 / math.sqrt(2)))  # A is worse
    assert diebold_mariano(loss_b, loss_a, lags=1).statistic == pytest.approx(-4.0)


def test_without_lags_it_is_the_plain_statistic_with_a_normal_tail() -> None:
    d = np.array([-0.3, 0.1, -0.4, -0.2, 0.0, -0.5])
    plain = d.mean() / math.sqrt(d.var() / len(d))  # population variance, as DM has it
    test = diebold_mariano(d, np.zeros(len(d)), lags=0)
    assert test.statistic == pytest.approx(plain)
    at_five_percent = 0.5 * math.erfc(1.6448536 / math.sqrt(2))
    assert at_five_percent == pytest.approx(0.05, abs=1e-7)


def test_equal_accuracy_is_rejected_at_about_the_level_it_is_tested_at() -> None:
    rng = np.random.default_rng(5)
    trials = [diebold_mariano(np.abs(rng.normal(size=300)), np.abs(rng.normal(size=300)))
              for _ in range(400)]  # fmt: skip
    size = np.mean([t.p_value < 0.05 for t in trials])
    assert 0.025 <= size <= 0.085  # one-sided 5 % test; 400 trials have an sd of 1.1 %


def test_autocorrelated_differences_widen_the_variance() -> None:
    rng = np.random.default_rng(2)
    d = np.convolve(rng.normal(size=2000), np.ones(5), mode="valid")  # MA(4): correlated
    assert long_run_variance(d, default_lags(len(d))) > 2 * long_run_variance(d, 0)


def test_unequal_or_too_short_losses_are_refused_and_no_variance_is_handled() -> None:
    with pytest.raises(ValueError, match="equally long"):
        diebold_mariano(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=">= 2 points"):
        diebold_mariano(np.zeros(1), np.zeros(1))
    assert diebold_mariano(np.ones(5), np.ones(5)).statistic == 0.0
    better = diebold_mariano(np.zeros(5), np.ones(5))
    assert better.statistic == -math.inf and better.p_value == 0.0
