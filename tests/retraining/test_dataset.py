"""The training data recorder: bounded, and keyed by series identity."""

import numpy as np

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import TickColumns
from forecaster.retraining.dataset import RECORDED_STEP_BYTES, HistoryRecorder

SECOND = 1_000_000_000


def test_the_recorder_holds_at_most_max_steps_the_newest_of_each_series() -> None:
    recorder = HistoryRecorder(max_steps=100)
    before = recorder.nbytes
    for step in range(1000):  # series 1 every step, series 2 every other step
        series = np.array([1, 2]) if step % 2 else np.array([1])
        recorder(series, np.full(len(series), float(step)), np.zeros(len(series)),
                 np.full(len(series), step))  # fmt: skip
    assert recorder.steps == 1500 and recorder.held == 100
    assert before == recorder.nbytes == 100 * RECORDED_STEP_BYTES
    one, two = recorder.sequences()
    assert len(one) + len(two) == 100
    assert one.ts.tolist() == list(range(1000 - len(one), 1000))  # newest, contiguous
    assert two.ts.tolist() == list(range(1001 - 2 * len(two), 1000, 2))


def test_one_call_larger_than_the_bound_keeps_its_newest_steps() -> None:
    recorder = HistoryRecorder(max_steps=3)
    recorder(np.array([5] * 7), np.arange(7.0), np.zeros(7), np.arange(7))
    assert [s.z.tolist() for s in recorder.sequences()] == [[4.0, 5.0, 6.0]]


def ticks(series: list[str], ts: list[int]) -> TickColumns:
    n = len(series)
    price = 10 * np.exp(np.cumsum(np.random.default_rng(len(ts)).normal(0, 0.01, n)))
    return TickColumns(
        position=np.arange(n, dtype=np.int64),
        series=series,
        ts=np.array(ts, np.int64),
        price=price,
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )


def test_a_series_that_reuses_an_evicted_series_slot_is_recorded_apart() -> None:
    recorder = HistoryRecorder(max_steps=1000)
    params = EngineParams(FeatureParams(min_history=2), ring_length=8, evict_ttl_ns=5 * SECOND)
    engine = Engine(params, recorder=recorder)
    engine.process(ticks(["A", "B"] * 4, [k * SECOND for k in range(8)]))
    engine.commit()
    slot_of_a = engine.table.slot_of["A"]
    engine.process(ticks(["B", "C"] * 10, [(10 + k) * SECOND for k in range(20)]))
    assert engine.commit() == 1  # A, idle since 6 s: its slot is free for D
    engine.process(ticks(["B", "D"] * 4, [(30 + k) * SECOND for k in range(8)]))
    engine.commit()
    assert engine.table.slot_of["D"] == slot_of_a
    firsts = sorted(int(s.ts[0] // SECOND) for s in recorder.sequences())
    # A's warm steps from 4 s, B's from 5 s, C's from 15 s, D's from 35 s: four sequences
    # (keyed by slot, D's steps would continue A's).
    assert len(firsts) == 4 and firsts == [4, 5, 15, 35]
