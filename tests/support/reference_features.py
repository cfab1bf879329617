"""The vectorised NumPy implementation of ``forecaster.core.features.advance``, which the
compiled one is proven equal to (``tests/core/test_features.py``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from forecaster.core.features import MIN_SCALE, FeatureParams, FeatureStep


def advance(
    params: FeatureParams, stats: npt.NDArray[np.void], price: np.ndarray, ts: np.ndarray
) -> FeatureStep:
    last_price = stats["last_price"]
    has_prev = last_price > 0
    log_price = np.log(price)
    ret = np.where(has_prev, log_price - np.log(np.where(has_prev, last_price, 1.0)), 0.0)
    n_returns = stats["n_returns"] + has_prev
    prev_scale = np.sqrt(np.maximum(stats["scale_sq"], MIN_SCALE**2))
    z = np.clip(ret / prev_scale, -params.clip, params.clip)
    scale_weight = np.maximum(params.scale_alpha, 1.0 / np.maximum(n_returns, 1))
    scale_sq = stats["scale_sq"] + has_prev * scale_weight * (ret * ret - stats["scale_sq"])
    level_weight = np.maximum(params.level_alpha, 1.0 / (n_returns + 1))
    level = np.where(
        has_prev, stats["level"] + level_weight * (log_price - stats["level"]), log_price
    )
    scale = np.sqrt(np.maximum(scale_sq, MIN_SCALE**2))
    d = np.clip(
        (log_price - level) / (scale * np.sqrt(params.level_halflife)), -params.clip, params.clip
    )
    stats["last_price"] = price
    stats["last_ts"] = ts
    stats["n_returns"] = n_returns
    stats["scale_sq"] = scale_sq
    stats["level"] = level
    return FeatureStep(z=z, d=d, scale=scale, warm=n_returns >= params.min_history)
