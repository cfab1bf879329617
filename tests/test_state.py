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
