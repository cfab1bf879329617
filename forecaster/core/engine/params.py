"""The engine's parameters.

>>> EngineParams(block_rows=0)
Traceback (most recent call last):
...
ValueError: block_rows must be >= 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forecaster.config import Settings
from forecaster.core.features import FeatureParams
from forecaster.core.intervals import IntervalParams
from forecaster.timestamps import seconds_ns


@dataclass(frozen=True)
class EngineParams:
    features: FeatureParams = field(default_factory=FeatureParams)
    intervals: IntervalParams = field(default_factory=IntervalParams)
    ring_length: int = Settings.ring_length
    # A series whose last tick is this much older than its partition's newest tick is
    # evicted (its state dropped); 0 keeps every series.
    evict_ttl_ns: int = seconds_ns(Settings.evict_ttl_s)
    # A round (or re-warm) of more series is stepped in blocks of this many: a block's
    # temporaries stay in cache and are reused from malloc's heap. Whole rounds of
    # 100,000 series make ~50 MB arrays, mapped and faulted in afresh on every step: 6x
    # slower per tick (see benchmarks/README.md).
    block_rows: int = 4096
    # The most series held at once; a tick of a new series beyond it is rejected
    # (series_limit) while the known series go on. 0 = no limit.
    max_series: int = Settings.max_series
    # A new model's states (a swap's, a shadow's) are re-warmed off the serving loop
    # (``rewarming``): the service. Else at once, where it is asked for: a replay, whose
    # forecasts are then the same at every run.
    rewarm_in_background: bool = False

    def __post_init__(self) -> None:
        if self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {self.block_rows}")
        if self.max_series < 0:
            raise ValueError(f"max_series must be >= 0, got {self.max_series}")
