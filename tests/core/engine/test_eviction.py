from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from forecaster.core.engine import Engine
from forecaster.core.engine.eviction import IdleEviction
from forecaster.core.table import SeriesTable
from forecaster.core.ticks import RejectReason
from tests.support.engine import PARAMS, SECOND, START
from tests.support.ticks import columns


def test_max_series_refuses_new_series_only_until_eviction_frees_a_slot() -> None:
    engine = Engine(replace(PARAMS, max_series=3, evict_ttl_ns=10 * SECOND))
    first = engine.process(columns(["A", "B", "C", "D", "A", "D"],
                                   [START] * 4 + [START + SECOND] * 2, [1.0] * 6))  # fmt: skip
    engine.commit()
    assert [(r.index, r.reason) for r in first.rejects] == [
        (3, RejectReason.SERIES_LIMIT), (5, RejectReason.SERIES_LIMIT)
    ]  # fmt: skip
    assert first.forecasts.ticks.series == ["A", "B", "C", "A"]
    assert len(engine.table) == 3 and "D" not in engine.table.slot_of
    slot_of_b = engine.table.slot_of["B"]
    later = engine.process(columns(["A", "C", "D"], [START + 20 * SECOND] * 3, [1.0] * 3))
    assert [r.reason for r in later.rejects] == [RejectReason.SERIES_LIMIT]
    assert engine.commit() == 1  # B, idle for 20 s: its slot is free from the next batch
    again = engine.process(columns(["D", "E"], [START + 21 * SECOND] * 2, [1.0] * 2))
    assert again.forecasts.ticks.series == ["D"] and engine.table.slot_of["D"] == slot_of_b
    assert [(r.index, r.reason) for r in again.rejects] == [(1, RejectReason.SERIES_LIMIT)]


def test_one_far_future_tick_neither_evicts_live_series_nor_stops_eviction() -> None:
    engine = Engine(replace(PARAMS, evict_ttl_ns=10 * SECOND))
    evicted = []

    def second(k: int, series: list[str]) -> None:
        engine.process(columns(series, [START + k * SECOND] * len(series), [1.0] * len(series)))
        evicted.append(engine.commit())

    for k in range(30):
        second(k, ["A", "B", "C", "D"])
    year_2150 = 5_680_000_000 * SECOND
    engine.process(columns(["A"], [year_2150], [1.0]))
    assert engine.commit() == 0
    for k in range(30, 60):
        second(k, ["B", "C"])  # D goes idle at 29 s, A is stuck in 2150
    assert set(engine.table.slot_of) == {"A", "B", "C"} and sum(evicted) == 1
    for k in range(60, 90):
        second(k, ["C", "E"])  # B idle from 59 s on
    assert set(engine.table.slot_of) == {"A", "C", "E"} and sum(evicted) == 2


def test_a_lone_ticking_series_does_not_drive_the_eviction_clock() -> None:
    """The eviction clock's documented price: one series alone cannot evict the others."""
    engine = Engine(replace(PARAMS, evict_ttl_ns=10 * SECOND))
    engine.process(columns(["A", "B"], [START, START], [1.0, 1.0]))
    engine.commit()
    for k in range(1, 60):
        engine.process(columns(["A"], [START + k * SECOND], [1.0]))
        assert engine.commit() == 0
    engine.process(columns(["C"], [START + 60 * SECOND], [1.0]))  # a second series ticks
    assert engine.commit() == 1 and set(engine.table.slot_of) == {"A", "C"}


@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 5), st.integers(-(2**40), 2**40)), max_size=8),
        max_size=12,
    )
)
def test_the_clock_is_the_second_newest_of_the_series_newest_ts(
    batches: list[list[tuple[int, int]]],
) -> None:
    """Batch after batch, whatever their order: the clock is the second largest of the
    newest ts each series reached (0 until two series ticked)."""
    eviction, newest = IdleEviction(ttl_ns=2**62), dict[int, int]()
    for batch in batches:
        series = np.array([uid for uid, _ in batch], np.int64)
        ts = np.array([at for _, at in batch], np.int64)
        eviction.sweep(SeriesTable(ring_length=1, state_size=0), np.zeros(len(batch), np.int32),
                       series, ts)  # fmt: skip
        for uid, at in batch:
            newest[uid] = max(newest.get(uid, at), at)
        expected = sorted(newest.values())[-2] if len(newest) >= 2 else 0
        assert eviction.clock(0) == expected
