import numpy as np

from forecaster.state import SeriesTable


def test_slots_are_stable_and_grow_past_capacity() -> None:
    table = SeriesTable(ring_length=3, state_size=2, capacity=2)
    names = [f"S{i}" for i in range(5)]
    assert table.slots_for(names).tolist() == [0, 1, 2, 3, 4]
    table.recurrent[4] = 7.0
    assert table.slots_for(names[::-1]).tolist() == [4, 3, 2, 1, 0]
    assert table.capacity >= 5 and table.recurrent[4].tolist() == [7.0, 7.0]


def test_history_is_oldest_first_and_keeps_the_last_ring_length_steps() -> None:
    table = SeriesTable(ring_length=3, state_size=1)
    a, b = table.slots_for(["A", "B"])
    for step in range(5):
        table.append_history(np.array([a]), np.array([step]), np.array([-step]), np.array([step]))
    table.append_history(np.array([b]), np.array([9.0]), np.array([9.0]), np.array([9]))
    history = table.history(np.array([a, b]))
    assert history.length.tolist() == [3, 1]
    assert history.z[0].tolist() == [2, 3, 4]
    assert history.d[0].tolist() == [-2, -3, -4]
    assert history.ts[1].tolist() == [9, 0, 0]


def test_take_and_put_move_a_partition_between_tables() -> None:
    source = SeriesTable(ring_length=2, state_size=3)
    slots = source.slots_for(["A", "B", "C"], np.array([0, 1, 0], np.int32))
    source.recurrent[slots] = np.arange(9, dtype=np.float32).reshape(3, 3)
    source.append_history(slots, np.array([1.0, 2, 3]), np.zeros(3), np.arange(3))
    snapshot = source.take(source.slots_of_partition(0))
    assert sorted(snapshot.series) == ["A", "C"] and len(source) == 1
    assert source.slots_for(["D"]).tolist() in ([0], [2])  # a freed slot is reused

    target = SeriesTable(ring_length=2, state_size=3)
    target.slots_for(["X"])
    moved = target.put(snapshot)
    assert target.recurrent[moved[snapshot.series.index("C")]].tolist() == [6, 7, 8]
    assert target.history(moved).z[:, 0].tolist() == [
        1.0 if s == "A" else 3.0 for s in snapshot.series
    ]
    assert target.partition[moved].tolist() == [0, 0]


def test_unbounded_series_names_stay_in_bounded_memory_with_eviction() -> None:
    from forecaster.engine import Engine, EngineParams
    from forecaster.ticks import TickColumns

    ttl_ns = 10 * 1_000_000_000  # ten seconds of event time
    engine = Engine(EngineParams(ring_length=4, evict_ttl_ns=ttl_ns))
    evicted = 0
    for second in range(300):  # 100 new names every second, each ticking once
        names = [f"S{second}-{k}" for k in range(100)]
        ticks = TickColumns(
            position=np.arange(100),
            series=names,
            ts=np.full(100, second * 1_000_000_000),
            price=np.full(100, 5.0),
            volume=np.full(100, np.nan),
            partition=np.zeros(100, np.int32),
        )
        evicted += engine.process(ticks).evicted
    assert len(engine.table) <= 100 * (10 + 10 // 8 + 2)  # TTL plus one sweep interval
    assert engine.table.capacity <= 2048  # 30,000 names seen, arrays never grew past this
    assert evicted == 30_000 - len(engine.table)
