"""Forecast quality as metrics: scored over a pipeline run, per named series too, capped."""

import math

import pytest

from forecaster.config import MAX_LABELLED_SERIES, Settings
from forecaster.errors import ConfigError
from forecaster.ops.metrics import Metrics
from tests.support.metrics import QUALITY_FIGURES, run_pipeline, sample
from tests.support.replay_input import ReplayInput


def test_a_run_scores_model_forecasts(replay: ReplayInput) -> None:
    metrics = Metrics(quality_series=["AR-GAMMA"])
    run_pipeline(replay, metrics)
    rolling = metrics.forecast_quality.rolling.get()
    assert sample(metrics, "forecaster_quality_points_total") > 0
    for figure in QUALITY_FIGURES:
        assert sample(metrics, f"forecaster_quality_{figure}_ratio") == getattr(rolling, figure)
        per_series = sample(metrics, f"forecaster_series_quality_{figure}_ratio", series="AR-GAMMA")
        assert math.isfinite(per_series)


def test_quality_labels_are_capped() -> None:
    too_many = [f"S{i}" for i in range(MAX_LABELLED_SERIES + 1)]
    with pytest.raises(ConfigError, match="at most"):
        Metrics(quality_series=too_many)
    with pytest.raises(ConfigError, match="quality_series_labels"):
        Settings(quality_series_labels=",".join(too_many))
    assert Settings(quality_series_labels=" A, B,,A ").quality_series() == ("A", "B")
