"""The partition lifecycle without a transport: assign, revoke, lose, restore, checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forecaster.core.engine import Engine, EngineParams, PartitionState
from forecaster.core.ticks import parse_messages
from forecaster.ops.metrics import Metrics
from forecaster.state.checkpoint import CheckpointStore
from forecaster.state.partitions import PartitionStates, Resume, restorable
from tests.support.waiting import wait_for

PARAMS = EngineParams()


def tick(series: str, second: int) -> bytes:
    return b'{"series": "%s", "ts": %d, "price": 2.0}' % (series.encode(), second * 1000)


def step(engine: Engine, *messages: bytes, partition: int = 0) -> None:
    ticks = parse_messages(list(messages)).ticks
    ticks.partition = np.full(len(ticks), partition, np.int32)
    engine.process(ticks)
    engine.commit()


def a_state(partition: int = 0) -> PartitionState:
    engine = Engine(PARAMS)
    step(engine, tick("A", 1), partition=partition)
    return engine.take_partition(partition)


def states_of(engine: Engine, store: CheckpointStore | None = None) -> PartitionStates:
    return PartitionStates(engine, store, Metrics(), checkpoint_interval_s=0.0)


def settle(states: PartitionStates) -> list[Resume]:
    """Every resume until no partition is restoring any more, in partition order (loads
    finish in any order)."""
    resumes: list[Resume] = []

    def settled() -> bool:
        resumes.extend(states.resumes())
        return states.restoring() == 0

    wait_for(settled, "the checkpoint loads")
    return sorted(resumes, key=lambda resume: resume.partition)


def test_kept_state_is_restored_only_at_the_offset_it_was_kept_at() -> None:
    state = a_state()
    assert restorable((state, 40), 40) is state
    assert restorable((state, 40), 55) is None  # another instance moved the partition on
    assert restorable((state, 40), 30) is None  # our own last commit did not get through
    assert restorable((state, 40), None) is None  # no committed offset: nothing to match
    assert restorable(None, 40) is None


def test_a_revoked_partition_assigned_back_unmoved_gets_its_state_back_once() -> None:
    engine = Engine(PARAMS)
    states = states_of(engine)
    states.assign({0: 0})
    step(engine, tick("A", 1))
    states.advance({0: 1})
    states.revoke([0])
    assert "A" not in engine.table.slot_of
    states.assign({0: 1})
    assert "A" in engine.table.slot_of and states.offsets == {0: 1}
    states.revoke([0])
    states.assign({0: 7})  # someone else moved it on meanwhile: the kept state is stale
    assert "A" not in engine.table.slot_of and states.offsets == {0: 7}


def test_a_lost_partition_is_dropped_not_checkpointed_nor_kept(tmp_path: Path) -> None:
    engine = Engine(PARAMS)
    store = CheckpointStore(tmp_path, PARAMS, Metrics())
    states = states_of(engine, store)
    states.assign({0: None})
    assert settle(states) == [Resume(0, None)]  # no checkpoint yet: from the first offset
    step(engine, tick("A", 1))
    states.advance({0: 1})
    states.lose([0])
    assert "A" not in engine.table.slot_of and states.offsets == {}
    assert store.load(0) is None
    states.assign({0: 1})
    assert settle(states) == [Resume(0, None)]  # nothing of the lost state came back
    assert "A" not in engine.table.slot_of


def test_a_revoked_partition_is_checkpointed_and_restored_where_it_stopped(
    tmp_path: Path,
) -> None:
    first = Engine(PARAMS)
    states = states_of(first, CheckpointStore(tmp_path, PARAMS, Metrics()))
    states.assign({3: None})
    assert settle(states) == [Resume(3, None)]
    step(first, tick("A", 1), tick("A", 2), partition=3)
    states.advance({3: 2})
    states.revoke([3])
    states.close()

    second = Engine(PARAMS)
    restored = states_of(second, CheckpointStore(tmp_path, PARAMS, Metrics()))
    restored.assign({3: 0})  # the committed offset lags behind: the checkpoint wins
    assert restored.held() == {3}
    assert settle(restored) == [Resume(3, 2)] and restored.held() == set()
    assert restored.offsets == {3: 2}
    before = first.snapshot_partition(3)
    assert not before.snapshot.series  # the first engine let it go
    after = second.snapshot_partition(3).snapshot
    assert after.series == ["A"]


def test_checkpoints_are_written_for_every_held_partition_when_due(tmp_path: Path) -> None:
    engine = Engine(PARAMS)
    store = CheckpointStore(tmp_path, PARAMS, Metrics())
    states = PartitionStates(engine, store, Metrics(), checkpoint_interval_s=3600.0)
    states.assign({0: 5, 1: 9})
    assert settle(states) == [Resume(0, None), Resume(1, None)]
    step(engine, tick("A", 1), partition=0)
    states.advance({0: 6, 1: 9})
    states.checkpoint_when_due()  # an hour has not passed
    assert store.load(0) is None
    states.checkpoint_interval_s = 0.0
    states.checkpoint_when_due()
    checkpoint, empty = store.load(0), store.load(1)
    assert checkpoint is not None and checkpoint.offset == 6
    assert empty is not None and empty.offset == 9 and not empty.state.snapshot.series
    assert checkpoint.state.snapshot.series == ["A"]


def test_exactly_once_a_restore_replays_silently_up_to_the_committed_offset(
    tmp_path: Path,
) -> None:
    store = CheckpointStore(tmp_path, PARAMS, Metrics())
    assert store.save(a_state(), offset=10)
    states = PartitionStates(Engine(PARAMS), store, Metrics(), checkpoint_interval_s=0.0,
                             replay_committed=True)  # fmt: skip
    states.assign({0: 25, 1: None})
    assert settle(states) == [Resume(0, 10), Resume(1, None)]
    assert states.replaying == {0: 25}  # partition 1: nothing committed, nothing to silence
    states.advance({0: 20})
    assert states.replaying == {0: 25}
    states.advance({0: 25})
    assert states.replaying == {}


def test_exactly_once_a_checkpoint_above_the_committed_offset_is_not_restored(
    tmp_path: Path,
) -> None:
    """Written by a transaction that did not commit: resuming there would skip ticks."""
    store = CheckpointStore(tmp_path, PARAMS, Metrics())
    assert store.save(a_state(), offset=10)
    assert store.save(a_state(), offset=30)
    states = PartitionStates(Engine(PARAMS), store, Metrics(), checkpoint_interval_s=0.0,
                             replay_committed=True)  # fmt: skip
    states.assign({0: 20})
    assert settle(states) == [Resume(0, 10)]
    assert states.replaying == {0: 20}
    at_least_once = states_of(Engine(PARAMS), store)
    at_least_once.assign({0: 20})
    assert settle(at_least_once) == [Resume(0, 30)]
    assert at_least_once.replaying == {}
