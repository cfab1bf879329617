"""Live interval coverage: counters that count what the engine's intervals did, gauges
that follow them."""

from __future__ import annotations

import numpy as np

from forecaster.core.engine import Engine, EngineParams
from forecaster.ops.metrics import Metrics
from tests.support.ticks import random_ticks


def test_counters_count_every_settled_interval_and_gauges_follow_the_coverage() -> None:
    metrics = Metrics(quality_halflife=1e9, quality_series=["S1"], interval_coverage=0.8)
    engine = Engine(EngineParams())
    hits = points = 0
    ticks = random_ticks(2000, 5, seed=3)
    for batch in np.array_split(np.arange(len(ticks)), 4):
        forecasts = engine.process(ticks.take(batch)).forecasts
        engine.commit()
        metrics.forecast_intervals.observe(forecasts)
        settled = forecasts.previous_lower > 0
        price = forecasts.ticks.price[settled]
        held = (forecasts.previous_lower[settled] <= price) & (
            price <= forecasts.previous_upper[settled]
        )
        points, hits = points + int(settled.sum()), hits + int(held.sum())
    sample = metrics.registry.get_sample_value
    assert sample("forecaster_interval_points_total") == points > 1990
    assert sample("forecaster_interval_hits_total") == hits
    rolling = sample("forecaster_interval_coverage_ratio")
    assert abs(rolling - hits / points) < 1e-3  # a half-life far longer than the stream
    assert sample("forecaster_interval_nominal_coverage_ratio") == 0.8
    assert 0.0 < sample("forecaster_interval_width_ratio") < 0.2
    assert 0.5 < sample("forecaster_series_interval_coverage_ratio", {"series": "S1"}) <= 1.0
    assert sample("forecaster_series_interval_width_ratio", {"series": "S1"}) > 0.0
