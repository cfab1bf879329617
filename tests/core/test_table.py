import numpy as np

from forecaster.core.table import TABLE_ARRAYS, BackupArea, SeriesTable


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
    second = 10**9
    for step in range(5):
        table.append_history(np.array([a]), np.array([step]), np.array([-step]),
                             np.array([step * second]))  # fmt: skip
    table.append_history(np.array([b]), np.array([9.0]), np.array([9.0]), np.array([9]))
    history = table.history(np.array([a, b]))
    assert history.length.tolist() == [3, 1]
    level = table.codec.step  # the ring keeps z and d to half a level
    np.testing.assert_allclose(history.z[0], [2, 3, 4], atol=level / 2)
    np.testing.assert_allclose(history.d[0], [-2, -3, -4], atol=level / 2)
    np.testing.assert_allclose(history.ts[0], np.array([2, 3, 4]) * second, atol=1e6)
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
    want = [1.0 if s == "A" else 3.0 for s in snapshot.series]
    np.testing.assert_allclose(target.history(moved).z[:, 0], want, atol=target.codec.step / 2)
    assert target.partition[moved].tolist() == [0, 0]


def test_unbounded_series_names_stay_in_bounded_memory_with_eviction() -> None:
    from forecaster.core.engine import Engine, EngineParams
    from forecaster.core.ticks import TickColumns

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
        engine.process(ticks)
        evicted += engine.commit()
    assert len(engine.table) <= 100 * (10 + 10 // 8 + 2)  # TTL plus one sweep interval
    assert engine.table.capacity <= 2048  # 30,000 names seen, arrays never grew past this
    assert evicted == 30_000 - len(engine.table)


def test_a_journal_takes_its_allocations_back_exactly() -> None:
    table = SeriesTable(ring_length=2, state_size=1, capacity=2)
    table.slots_for(["A", "B", "C"])
    table.evict_idle(cutoff_ts=1)  # all three idle: slots 0-2 free
    table.slots_for(["D"])
    before = (dict(table.slot_of), list(table.series), list(table._free), table.uid.copy())
    journal = table.journal()
    slots = table.slots_for(["E", "D", "F", "G", "H"], journal=journal)  # 2 reused, 2 grown
    table.stats["last_price"][slots[[0, 2, 3, 4]]] = 9.0  # the new series
    table.unallocate(journal)
    after = (dict(table.slot_of), list(table.series), list(table._free), table.uid)
    assert after[:3] == before[:3]
    np.testing.assert_array_equal(after[3], np.r_[before[3], np.zeros(4, np.int64)])
    assert (table.stats["last_price"] == 0).all()
    # Allocating again gives the same slots and uids, as if the first time never happened.
    assert table.slots_for(["E", "D", "F", "G", "H"]).tolist() == slots.tolist()
    assert table.uid[slots].tolist() == [5, 4, 6, 7, 8]


def test_uids_are_never_reused_by_a_later_series() -> None:
    table = SeriesTable(ring_length=2, state_size=1)
    (old,) = table.slots_for(["A"])
    uid = int(table.uid[old])
    table.evict_idle(cutoff_ts=1)
    (new,) = table.slots_for(["B"])
    assert new == old and table.uid[new] != uid and table.uid[new] > 0


def test_a_limit_refuses_only_new_names() -> None:
    table = SeriesTable(ring_length=2, state_size=1)
    table.slots_for(["A", "B"])
    assert table.slots_for(["C", "A", "C", "B"], limit=2).tolist() == [-1, 0, -1, 1]
    assert len(table) == 2 and "C" not in table.slot_of
    assert table.slots_for(["C"], limit=3).tolist() == [2]


def test_a_backup_restores_rows_and_the_ring_cells_of_the_appends_it_was_made_for() -> None:
    table = SeriesTable(ring_length=3, state_size=2)
    slots = table.slots_for(["A", "B", "C"])
    for step in range(4):  # A's ring wraps
        table.append_history(slots[:1], np.array([step]), np.array([step]), np.array([step]))
    table.recurrent[slots] = 1.0
    names = ("stats", "recurrent", "ring", "ring_newest_ts", "ring_track_ts", "ring_count")
    before = [getattr(table, name).copy() for name in names]
    backup = table.backup(slots[:2], np.array([5, 1]), BackupArea())  # A wraps again
    for _ in range(5):
        table.append_history(slots[:1], np.array([9.0]), np.array([9.0]), np.array([9]))
    table.append_history(slots[1:], np.array([8.0, 8]), np.array([8.0, 8]), np.array([8, 8]))
    table.recurrent[slots] = 5.0
    table.stats["last_price"][slots] = 7.0
    table.restore(backup)
    assert table.history(slots[2:]).z[0, 0] == 8.0  # C was not backed up
    table.ring[slots[2], 0] = table.ring_newest_ts[slots[2]] = table.ring_track_ts[slots[2]] = 0
    table.ring_count[slots[2]] = 0
    table.recurrent[slots[2]] = 1.0
    table.stats["last_price"][slots[2]] = 0.0
    for name, array in zip(names, before, strict=True):
        np.testing.assert_array_equal(getattr(table, name), array, err_msg=name)


def test_a_series_slot_at_the_default_ring_fits_the_memory_budget() -> None:
    """Issue 22: at most 4,096 resident bytes per series with the default settings. The
    slot's arrays must leave room for what a series costs besides (its name, dict entry
    and list slot: ~200 B, benchmarks/README.md)."""
    from forecaster.config import Settings
    from forecaster.model.spec import ModelSpec
    from forecaster.params import model_spec

    state_size = model_spec(Settings()).state_size
    assert state_size == ModelSpec(cell="lstm", layers=2, units=32).state_size  # h, c of 2x32
    table = SeriesTable(Settings().ring_length, state_size, capacity=1)
    row_bytes = sum(getattr(table, name)[0].nbytes for name in TABLE_ARRAYS)
    assert row_bytes <= 4_096 - 300
