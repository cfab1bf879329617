"""The retraining gate on a holdout: figures against naive and the serving model, verdict."""

import numpy as np
import pytest

from forecaster.errors import TrainingError
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.retraining.dataset import Sequence
from forecaster.retraining.gate import judge, split_holdout
from tests.support.models import constant_stepper

SPEC = ModelSpec(cell="gru", layers=1, units=4)


def constant_model(value: float, version: str) -> Stepper:
    return constant_stepper(SPEC, value, version)


def holdout_of(z_values: list[np.ndarray], fraction: float = 0.25):  # type: ignore[no-untyped-def]
    sequences = [Sequence(z, np.zeros(len(z)), np.arange(len(z)) * 10**9) for z in z_values]
    return split_holdout(sequences, fraction)


def test_holdout_is_the_tail_of_each_series_and_never_fitted_on() -> None:
    holdout = holdout_of([np.arange(20.0), np.arange(8.0)])
    assert holdout.start.tolist() == [15, 6]
    assert [s.z.tolist()[-1] for s in holdout.fit] == [14.0, 5.0]


def test_a_candidate_better_than_naive_and_serving_by_the_margin_is_promoted() -> None:
    holdout = holdout_of([np.full(40, 1.0), np.full(40, 1.2)])  # next z is ~1.1 on average
    result = judge(constant_model(1.0, "good"), constant_model(0.5, "old"), holdout, 0.05)
    assert result.promote
    assert result.points == 2 * 10
    assert result.naive_mae == pytest.approx(1.1)
    assert result.candidate_mae == pytest.approx(0.1)
    assert result.serving_mae == pytest.approx(0.6)
    assert result.candidate_mase == pytest.approx(0.1 / 1.1)


def test_a_candidate_not_better_by_the_margin_is_rejected_with_its_figures() -> None:
    holdout = holdout_of([np.full(40, 1.0)])
    worse = judge(constant_model(3.0, "bad"), None, holdout, 0.0)
    assert not worse.promote and "naive" in worse.reason
    assert worse.candidate_mae == pytest.approx(2.0) and worse.naive_mae == pytest.approx(1.0)
    barely = judge(constant_model(0.96, "new"), constant_model(1.0, "old"), holdout, 0.05)
    assert not barely.promote and "serving" in barely.reason  # 0.04 vs 0: serving is exact


def test_non_finite_candidate_forecasts_are_a_failure_not_a_rejection() -> None:
    with pytest.raises(TrainingError, match="non-finite"):
        judge(constant_model(np.nan, "nan"), None, holdout_of([np.ones(20)]), 0.0)
