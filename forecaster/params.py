"""The parts' parameters of Settings: the one place a setting becomes a part's argument.

Each function takes the whole Settings and returns what one part is built with. A part's
parameter class reads its own defaults from Settings, so the default Settings give the
default parameters:

>>> engine_params(Settings()) == EngineParams()
True
>>> model_spec(Settings(cell="gru", units=16))
ModelSpec(cell='gru', layers=2, units=16, n_features=4)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forecaster.config import Settings
from forecaster.core.engine import EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.intervals import IntervalParams
from forecaster.core.ticks import InputLimits
from forecaster.errors import ConfigError
from forecaster.model.spec import ModelSpec
from forecaster.timestamps import rfc3339_ns, seconds_ns

if TYPE_CHECKING:
    from forecaster.retraining.coordinator import RetrainPolicy


def model_spec(settings: Settings) -> ModelSpec:
    """The architecture of newly trained models."""
    return ModelSpec(cell=settings.cell, layers=settings.layers, units=settings.units)


def feature_params(settings: Settings) -> FeatureParams:
    """How the engine computes features (a model serves only with those it was trained on)."""
    return FeatureParams(
        min_history=settings.min_history,
        scale_halflife=settings.scale_halflife,
        level_halflife=settings.level_halflife,
    )


def interval_params(settings: Settings) -> IntervalParams:
    """How the engine calibrates the prediction interval around every forecast."""
    return IntervalParams(
        coverage=settings.interval_coverage,
        step=settings.interval_step,
        halflife=settings.interval_halflife,
    )


def engine_params(settings: Settings) -> EngineParams:
    """The engine's features, intervals, history ring, idle eviction and series limit."""
    return EngineParams(
        features=feature_params(settings),
        intervals=interval_params(settings),
        ring_length=settings.ring_length,
        evict_ttl_ns=seconds_ns(settings.evict_ttl_s),
        max_series=settings.max_series,
    )


def input_limits(settings: Settings) -> InputLimits:
    """The sanity bounds a tick must keep, beyond its format."""
    try:
        return InputLimits(
            max_message_bytes=settings.max_message_bytes,
            max_series_chars=settings.max_series_chars,
            min_price=settings.min_price,
            max_price=settings.max_price,
            min_ts_ns=rfc3339_ns(settings.min_ts),
            max_ts_ns=rfc3339_ns(settings.max_ts),
            max_future_skew_ns=seconds_ns(settings.max_future_skew_s),
        )
    except ValueError as exc:  # a max_ts the tick format cannot hold
        raise ConfigError(f"input limits: {exc}") from exc


def retrain_policy(settings: Settings) -> RetrainPolicy:
    """When to retrain, on which window, and what a candidate must show."""
    # Here, not at the top: a Kafka source's input limits need no retraining stack.
    from forecaster.retraining.coordinator import RetrainPolicy
    from forecaster.retraining.decay import DecayPolicy
    from forecaster.retraining.shadow import ShadowPolicy
    from forecaster.retraining.window import WindowSpec

    return RetrainPolicy(
        interval_s=settings.retrain_interval_s,
        cron=settings.retrain_cron,
        every_ticks=settings.retrain_every_ticks,
        bootstrap_steps=settings.bootstrap_steps,
        window=WindowSpec(ticks=settings.retrain_window_ticks, seconds=settings.retrain_window_s),
        holdout=settings.retrain_holdout,
        margin=settings.retrain_margin,
        timeout_s=settings.retrain_timeout_s,
        keep_versions=settings.keep_versions,
        registry_poll_s=settings.registry_poll_s,
        decay=DecayPolicy(
            window=settings.decay_window,
            mase_limit=settings.decay_mase,
            margin=settings.decay_margin,
            cooldown_s=settings.decay_cooldown_s,
        ),
        shadow=ShadowPolicy(
            mode=settings.promotion,
            min_points=settings.shadow_min_points,
            max_s=settings.shadow_max_s,
            significance=settings.shadow_significance,
        ),
    )
