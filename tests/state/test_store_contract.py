"""The contract of every checkpoint store (``Checkpoints``): one suite, run on each store.

As River and Quix Streams test their state backends, what the service relies on is
asserted once, whatever keeps the checkpoints: here the directory (CheckpointStore) and
the Kafka changelog topic (ChangelogStore, on a Tansu broker: marked kafka). A new store
joins by adding a ``Place`` to the ``place`` fixture.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from forecaster.config import Settings
from forecaster.core.engine import Engine, PartitionState
from forecaster.core.table import SLOT_ARRAYS
from forecaster.core.ticks import parse_messages
from forecaster.ops.metrics import Metrics
from forecaster.state.changelog import ChangelogStore, chunk_records, ensure_changelog
from forecaster.state.checkpoint import (
    REFUSAL_REASONS,
    Checkpoint,
    Checkpoints,
    CheckpointStore,
    decode,
    write,
)
from tests.support.broker import create_topics
from tests.support.checkpoints import (
    CORRUPT,
    PARAMS,
    crafted,
    good_checkpoint,
    refusals,
    set_header,
    state_of,
    stepped_engine,
)

CHANGELOG_PARTITIONS = 6  # every partition the tests below use


class Place(Protocol):
    """Where a store keeps its checkpoints; every store opened on it sees the same ones."""

    metrics: Metrics  # shared by the stores it opens

    def open(self) -> Checkpoints: ...

    def plant(self, partition: int, data: bytes, offset: int) -> None:
        """Write ``data`` as a checkpoint of ``partition`` at input ``offset``, the way the
        store's own save would write a newer one, but bytes as given (no ``encode``)."""
        ...


@dataclass
class Directory:
    root: Path
    metrics: Metrics = field(default_factory=Metrics)

    def open(self) -> CheckpointStore:
        return CheckpointStore(self.root, PARAMS, self.metrics)

    def plant(self, partition: int, data: bytes, offset: int) -> None:
        write(self.open().folder(partition), data)  # rotated in as current, as a save does


@dataclass
class Changelog:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    opened: list[ChangelogStore] = field(default_factory=list)

    @classmethod
    def on(cls, settings: Settings, test_name: str) -> Changelog:
        """A changelog of topics of this test's own (Kafka topic names allow no brackets)."""
        topic = re.sub(r"[^A-Za-z0-9._-]+", "-", test_name)
        config = replace(settings, state_store="kafka", input_topic=f"{topic}.ticks",
                         changelog_topic=f"{topic}.state")  # fmt: skip
        create_topics(config.bootstrap_servers, {config.input_topic: CHANGELOG_PARTITIONS})
        # As the service has it before its first save (it restores a partition before it
        # checkpoints one): a save alone would leave the topic to the broker's auto-creation.
        ensure_changelog(config)
        return cls(config)

    def open(self) -> ChangelogStore:
        store = ChangelogStore(self.settings, PARAMS, self.metrics)
        self.opened.append(store)
        return store

    def plant(self, partition: int, data: bytes, offset: int) -> None:
        # A writer of its own (its refusals uncounted), which learns by loading which slot
        # a save would write next; its records are the ones save sends.
        writer = ChangelogStore(self.settings, PARAMS, Metrics())
        try:
            writer.load(partition)
            slot = 1 - writer._newest_slot.get(partition, 1)
            writer._send(partition, chunk_records(partition, slot, data, offset, uuid.uuid4().hex))
        finally:
            writer.close()

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["directory", pytest.param("changelog", marks=pytest.mark.kafka)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "directory":
        yield Directory(tmp_path)
        return
    changelog = Changelog.on(request.getfixturevalue("settings"), request.node.name)
    try:
        yield changelog
    finally:
        changelog.close()


def loaded(store: Checkpoints, partition: int) -> Checkpoint:
    checkpoint = store.load(partition)
    assert checkpoint is not None, f"no checkpoint of partition {partition}"
    return checkpoint


def assert_same_state(got: PartitionState, want: PartitionState) -> None:
    assert (got.partition, got.model_version) == (want.partition, want.model_version)
    assert got.snapshot.series == want.snapshot.series
    for name in SLOT_ARRAYS:
        mine, theirs = getattr(got.snapshot, name), getattr(want.snapshot, name)
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, name
        assert mine.tobytes() == theirs.tobytes(), name


def test_nothing_saved_loads_as_none(place: Place) -> None:
    assert place.open().load(0) is None


def test_a_saved_state_loads_back_as_it_was(place: Place) -> None:
    store, state = place.open(), state_of(0)
    assert store.save(state, offset=18)
    checkpoint = loaded(store, 0)
    assert checkpoint.offset == 18
    assert_same_state(checkpoint.state, state)


def test_a_restored_partition_forecasts_exactly_as_the_uninterrupted_one(place: Place) -> None:
    engine = stepped_engine(6)
    store = place.open()
    assert store.save(engine.snapshot_partition(0), offset=18)

    restored = Engine(PARAMS, model=engine.model)
    checkpoint = store.load(0)
    assert checkpoint is not None and checkpoint.offset == 18
    restored.put_partition(checkpoint.state)
    nxt = parse_messages([b'{"series":"B","ts":99000,"price":11.5}']).ticks
    want, got = engine.process(nxt).forecasts, restored.process(nxt).forecasts
    assert not got.naive[0] and got.forecast.tolist() == want.forecast.tolist()
    assert sorted(restored.table.slot_of) == ["A", "B", "ü-C"]


def test_an_empty_partition_is_a_checkpoint_too(place: Place) -> None:
    store = place.open()
    store.save(Engine(PARAMS).snapshot_partition(5), offset=40)
    checkpoint = store.load(5)
    assert checkpoint is not None and checkpoint.offset == 40
    assert checkpoint.state.snapshot.series == [] and len(checkpoint.state.snapshot.stats) == 0
    assert np.array_equal(checkpoint.state.snapshot.partition, np.zeros(0, np.int32))


def test_the_newest_save_wins(place: Place) -> None:
    store = place.open()
    for ticks, offset in enumerate((5, 9, 12, 20), start=2):
        state = state_of(0, ticks)
        assert store.save(state, offset)
        checkpoint = loaded(store, 0)
        assert checkpoint.offset == offset
        assert_same_state(checkpoint.state, state)


def test_partitions_are_independent(place: Place) -> None:
    store = place.open()
    first, second = state_of(0, ticks=3), state_of(1, ticks=5)
    assert store.save(first, offset=5) and store.save(second, offset=7)
    for ticks, offset in ((4, 11), (5, 15)):  # partition 0 moves on alone
        assert store.save(state_of(0, ticks), offset)

    checkpoint = loaded(store, 1)
    assert checkpoint.offset == 7
    assert_same_state(checkpoint.state, second)
    assert loaded(store, 0).offset == 15
    assert store.load(2) is None
    assert sum(refusals(place.metrics, reason) for reason in REFUSAL_REASONS) == 0


def test_a_checkpoint_of_another_partition_is_never_returned_for_this_one(place: Place) -> None:
    place.plant(2, good_checkpoint(partition=5), offset=9)
    assert decode(good_checkpoint(partition=5), PARAMS).state.partition == 5  # whole in itself
    assert place.open().load(2) is None
    assert refusals(place.metrics, "incompatible") == 1


def test_checkpoints_outlive_the_store_that_saved_them(place: Place) -> None:
    first = place.open()
    zero, one = state_of(0), state_of(1, ticks=4)
    assert first.save(zero, offset=18) and first.save(one, offset=4)
    first.close()

    second = place.open()
    for state, offset in ((zero, 18), (one, 4)):
        checkpoint = loaded(second, state.partition)
        assert checkpoint.offset == offset
        assert_same_state(checkpoint.state, state)


# A defect as a checkpoint of a partition, and the reason it is refused for.
REFUSED: dict[str, tuple[Callable[[int], bytes], str]] = {
    "nan recurrent state": (lambda p: crafted(CORRUPT["nan recurrent state"], p), "corrupt"),
    "repeated name": (lambda p: crafted(CORRUPT["repeated name"], p), "corrupt"),
    "series of another partition": (lambda p: crafted(CORRUPT["foreign partition"], p), "corrupt"),
    "truncated": (lambda p: good_checkpoint(p)[:-100], "unreadable"),
    "another format": (lambda p: crafted(set_header(format=1), p), "incompatible"),
}


@pytest.mark.parametrize("defect", REFUSED)
def test_a_refused_checkpoint_is_never_returned(
    place: Place, defect: str, caplog: pytest.LogCaptureFixture
) -> None:
    make, reason = REFUSED[defect]
    store = place.open()
    assert store.save(state_of(0), offset=9)
    place.plant(0, make(0), offset=12)
    assert loaded(store, 0).offset == 9  # the older, sound one
    assert refusals(place.metrics, reason) == 1
    assert f"refused ({reason})" in caplog.text

    place.plant(3, make(3), offset=12)
    assert store.load(3) is None  # nothing to trust: the caller rebuilds the partition
    assert refusals(place.metrics, reason) == 2
