"""Settings become the parts' parameters in forecaster.params, and a part's own defaults
are the settings' defaults: one place where each default is written."""

from collections.abc import Callable
from typing import Any

import pytest

from forecaster.config import Settings
from forecaster.core.engine import EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import InputLimits
from forecaster.errors import ConfigError
from forecaster.model.spec import ModelSpec
from forecaster.ops.quality import DEFAULT_HALFLIFE
from forecaster.params import (
    engine_params,
    feature_params,
    input_limits,
    model_spec,
    retrain_policy,
)
from forecaster.retraining.coordinator import RetrainPolicy


@pytest.mark.parametrize(
    ("convert", "part"),
    [
        (engine_params, EngineParams),
        (feature_params, FeatureParams),
        (model_spec, ModelSpec),
        (input_limits, InputLimits),
        (retrain_policy, RetrainPolicy),
    ],
)
def test_the_default_settings_give_each_part_its_default_parameters(
    convert: Callable[[Settings], Any], part: Callable[[], Any]
) -> None:
    assert convert(Settings()) == part()


def test_the_quality_gauges_default_to_the_setting() -> None:
    assert Settings.quality_halflife == DEFAULT_HALFLIFE


def test_settings_reach_the_parts_in_their_units() -> None:
    settings = Settings(ring_length=64, evict_ttl_s=1.5, max_series=7, min_history=5,
                        max_ts="2100-01-01T00:00:00Z", max_future_skew_s=0.25)  # fmt: skip
    assert engine_params(settings) == EngineParams(
        FeatureParams(min_history=5), ring_length=64, evict_ttl_ns=1_500_000_000, max_series=7
    )
    limits = input_limits(settings)
    assert (limits.max_ts_ns, limits.max_future_skew_ns) == (4_102_444_800 * 10**9, 250_000_000)


def test_a_latest_ts_the_tick_format_cannot_hold_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="input limits: need 1970 <= min_ts < max_ts"):
        input_limits(Settings(max_ts="2256-01-01T00:00:00Z"))
