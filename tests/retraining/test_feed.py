"""The engine's feed for retraining: warm steps counted, the newest tick time, and the
first model's data, bounded."""

import numpy as np
import pytest

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import TickColumns
from forecaster.retraining.dataset import FIRST_CAPACITY, RECORDED_STEP_BYTES, HistoryRecorder
from forecaster.retraining.feed import (
    BOOTSTRAP_HEADROOM,
    BOOTSTRAP_MAX_STEPS,
    StepFeed,
    bootstrap_recorder,
)

SECOND = 1_000_000_000


def test_the_bootstrap_recorder_holds_a_few_times_the_bootstrap_steps() -> None:
    recorder = bootstrap_recorder(20_000)
    assert recorder.max_steps == BOOTSTRAP_HEADROOM * 20_000
    assert recorder.nbytes <= 3_000_000
    with pytest.raises(ValueError, match="max_steps"):
        HistoryRecorder(0)


def test_a_huge_bound_costs_memory_only_as_steps_arrive() -> None:
    recorder = bootstrap_recorder(10**9)  # a service told never to train
    assert recorder.max_steps == BOOTSTRAP_MAX_STEPS
    assert recorder.nbytes <= FIRST_CAPACITY * RECORDED_STEP_BYTES
    for block in range(10):
        keys = np.arange(1000)
        recorder(keys, np.full(1000, float(block)), np.zeros(1000), np.full(1000, block))
    assert recorder.held == 10_000 and recorder.nbytes < 4 * 10_000 * RECORDED_STEP_BYTES
    sequences = recorder.sequences()
    assert len(sequences) == 1000 and sequences[7].z.tolist() == [float(b) for b in range(10)]


def test_the_feed_counts_committed_warm_steps_and_records_the_first_models_data() -> None:
    feed = StepFeed(bootstrap_steps=6, first_model=True)
    engine = Engine(EngineParams(FeatureParams(min_history=2)), recorder=feed)
    n = 12
    engine.process(TickColumns(
        position=np.arange(n, dtype=np.int64), series=["A", "B"] * (n // 2),
        ts=np.arange(n, dtype=np.int64) * SECOND, price=10 * np.exp(np.arange(n) / 100),
        volume=np.full(n, np.nan), partition=np.zeros(n, np.int32),
    ))  # fmt: skip
    assert feed.steps_since_run == 0  # pending: not yet committed
    engine.commit()
    assert feed.steps_since_run == 8  # 4 of each series' 6 ticks are warm (min_history 2)
    assert feed.newest_ts == (n - 1) * SECOND
    assert feed.bootstrap is not None and feed.bootstrap.steps == 8 and feed.bootstrap_due()
    assert feed.bootstrap_missed() == 16 and not feed.bootstrap_due()  # waits for twice as many
    feed.run_started()
    assert feed.steps_since_run == 0
    feed.model_served()
    assert feed.bootstrap is None and not feed.bootstrap_due()
    assert StepFeed(bootstrap_steps=6, first_model=False).bootstrap is None
