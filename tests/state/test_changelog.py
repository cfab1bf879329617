"""The Kafka changelog state store: chunk assembly rules, hostile records and checkpoints
refused without a broker, and a real broker round trip."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from forecaster.config import Settings
from forecaster.core.engine import Engine, EngineParams
from forecaster.core.ticks import parse_messages
from forecaster.ops.metrics import Metrics
from forecaster.state.changelog import (
    HEADER,
    MAX_CHUNKS,
    ChangelogError,
    ChangelogStore,
    Chunk,
    chunk_records,
    whole_checkpoints,
)
from forecaster.state.checkpoint import Checkpoint, encode
from tests.support.broker import admin_client, create_topics
from tests.support.checkpoints import CORRUPT, crafted, good_checkpoint, refusals
from tests.support.checkpoints import PARAMS as CHECKPOINT_PARAMS

PARAMS = EngineParams()


def chunks_of(*writes: tuple[int, bytes, int, str]) -> list[Chunk]:
    """The newest chunk per key after ``writes`` (slot, data, offset, id), in order."""
    newest: dict[str, Chunk] = {}
    for slot, data, offset, snapshot_id in writes:
        for key, value, headers in chunk_records(7, slot, data, offset, snapshot_id, size=2):
            newest[key] = Chunk.of(key, value, headers, position=len(newest) + 1000 * offset)
    return list(newest.values())


def test_the_newest_whole_checkpoint_wins_and_a_partial_write_is_never_assembled() -> None:
    whole = whole_checkpoints(chunks_of((0, b"aaaa", 10, "x"), (1, b"bbbb", 20, "y")))
    assert [(w.slot, w.offset, w.data) for w in whole] == [(1, 20, b"bbbb"), (0, 10, b"aaaa")]

    # A crash after the first of two chunks of a new write to slot 0: its key 7/0/1 still
    # holds the chunk of the write before.
    older = chunks_of((0, b"aaaa", 10, "x"), (1, b"bbbb", 20, "y"))
    crashed = Chunk.of(*chunk_records(7, 0, b"cccc", 30, "z", size=2)[0], position=10**6)
    partial = [crashed if c.key == crashed.key else c for c in older]
    assert [(w.slot, w.offset) for w in whole_checkpoints(partial)] == [(1, 20)]


def test_a_record_that_is_no_chunk_is_refused_with_its_key() -> None:
    with pytest.raises(ValueError, match="'junk'"):
        Chunk.of(b"junk", b"x", [], position=0)


def headers(chunk: str = "0", chunks: str = "1", offset: str = "5", snapshot_id: str = "x"
            ) -> list[tuple[str, Any]]:  # fmt: skip
    fields = {"chunk": chunk, "chunks": chunks, "offset": offset, "id": snapshot_id}
    return [(HEADER + name, value.encode()) for name, value in fields.items()]


HOSTILE: dict[str, tuple[Any, list[tuple[str, Any]]]] = {
    "slot 2": (b"7/2/0", headers()),
    "no chunk in the key": (b"7/0", headers()),
    "partition not a number": (b"x/0/0", headers()),
    "key and header disagree": (b"7/0/1", headers(chunk="0", chunks="2")),
    "chunk past the count": (b"7/0/3", headers(chunk="3", chunks="2")),
    "no chunks": (b"7/0/0", headers(chunks="0")),
    "too many chunks": (b"7/0/0", headers(chunks=str(MAX_CHUNKS + 1))),
    "negative offset": (b"7/0/0", headers(offset="-1")),
    "offset in exponent form": (b"7/0/0", headers(offset="1e3")),
    "empty id": (b"7/0/0", headers(snapshot_id="")),
    "header not utf-8": (b"7/0/0", [*headers()[:3], (HEADER + "id", b"\xff")]),
    "header without value": (b"7/0/0", [*headers()[:3], (HEADER + "id", None)]),
    "header missing": (b"7/0/0", headers()[:3]),
    "key not utf-8": (b"\xff/0/0", headers()),
    "no key": (None, headers()),
}


@pytest.mark.parametrize(("key", "fields"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_record_with_a_malformed_key_or_headers_is_no_chunk(
    key: Any, fields: list[tuple[str, Any]]
) -> None:
    with pytest.raises(ValueError, match="is not a checkpoint chunk"):
        Chunk.of(key, b"data", fields, position=0)


def test_only_chunks_of_one_write_that_agree_on_count_and_offset_are_assembled() -> None:
    first = Chunk.of(b"7/0/0", b"ab", headers(chunks="2", offset="5"), position=1)
    second = Chunk.of(b"7/0/1", b"cd", headers(chunk="1", chunks="2", offset="6"), position=2)
    assert whole_checkpoints([first, second]) == []
    second = Chunk.of(b"7/0/1", b"cd", headers(chunk="1", chunks="2", offset="5"), position=2)
    assert [w.data for w in whole_checkpoints([first, second])] == [b"abcd"]


def unit_store(metrics: Metrics, chunks: list[Chunk]) -> ChangelogStore:
    """A store whose changelog reads back ``chunks`` (no broker)."""
    store = ChangelogStore(Settings(state_store="kafka"), CHECKPOINT_PARAMS, metrics)
    store._topic_checked = True
    store._read = lambda partition: {c.key: c for c in chunks}  # type: ignore[method-assign]
    return store


def written(slot: int, data: bytes, offset: int, position: int, partition: int = 0) -> list[Chunk]:
    records = chunk_records(partition, slot, data, offset, f"w{position}", size=1000)
    return [Chunk.of(*record, position=position + i) for i, record in enumerate(records)]


@pytest.mark.parametrize("defect", ["nan recurrent state", "repeated name", "foreign partition"])
def test_a_signed_but_unsound_checkpoint_in_the_changelog_is_refused_and_the_older_used(
    defect: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    older = written(0, good_checkpoint(), offset=9, position=0)
    newer = written(1, crafted(CORRUPT[defect]), offset=12, position=100)
    restored = unit_store(metrics, older + newer).load(0)
    assert restored is not None and restored.offset == 9
    assert refusals(metrics, "corrupt") == 1
    assert "slot 1 refused (corrupt)" in caplog.text

    assert unit_store(metrics, newer).load(0) is None  # none usable: rebuild the partition
    assert refusals(metrics, "corrupt") == 2


def test_a_checkpoint_of_another_input_partition_is_refused() -> None:
    metrics = Metrics()
    store = unit_store(metrics, written(0, good_checkpoint(partition=3), offset=9, position=0))
    assert store.load(0) is None
    assert refusals(metrics, "incompatible") == 1


def test_a_record_keyed_for_another_partition_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    store = ChangelogStore(Settings(state_store="kafka"), CHECKPOINT_PARAMS, Metrics())
    chunks: dict[str, Chunk] = {}
    for key in (b"3/0/0", b"4/0/0"):
        record = SimpleNamespace(key=key, value=b"x", headers=headers(), offset=1)
        store._keep(chunks, record, partition=4)
    assert list(chunks) == ["4/0/0"]
    assert "'3/0/0' in partition 4: ignored" in caplog.text


def engine_of_series(series: int) -> Engine:
    engine = Engine(PARAMS)
    messages = [f'{{"series":"S{i}","ts":{t},"price":{1 + t}}}'.encode()
                for t in range(1, 4) for i in range(series)]  # fmt: skip
    engine.process(parse_messages(messages).ticks)
    return engine


@pytest.mark.kafka
def test_checkpoints_round_trip_through_the_broker_in_chunks_newest_first(
    settings: Settings,
) -> None:
    config = replace(settings, state_store="kafka", changelog_topic=settings.input_topic + ".state")
    create_topics(config.bootstrap_servers, {config.input_topic: 3})
    engine = engine_of_series(1000)  # more than two chunks
    state = engine.snapshot_partition(0)
    assert len(encode(Checkpoint(state, 5), PARAMS)) > 2 * 512 * 1024
    metrics = Metrics()
    store = ChangelogStore(config, PARAMS, metrics)
    try:
        assert store.load(0) is None  # creates the topic; nothing in it yet
        assert store.save(state, offset=5) and store.save(state, offset=9)
        fresh = ChangelogStore(config, PARAMS, metrics)  # another instance
        restored = fresh.load(0)
        assert fresh.load(1) is None
    finally:
        store.close()
    assert restored is not None and restored.offset == 9
    assert restored.state.snapshot.series == state.snapshot.series
    assert (restored.state.snapshot.recurrent == state.snapshot.recurrent).all()
    admin = admin_client(config.bootstrap_servers)
    try:
        (described,) = admin.describe_topics([config.changelog_topic])
    finally:
        admin.close()
    assert len(described["partitions"]) == 3  # as many as the input topic


@pytest.mark.kafka
def test_a_changelog_with_fewer_partitions_than_the_input_is_refused(
    settings: Settings,
) -> None:
    config = replace(settings, state_store="kafka", changelog_topic=settings.input_topic + ".state")
    create_topics(config.bootstrap_servers, {config.input_topic: 4, config.changelog_topic: 2})
    with pytest.raises(ChangelogError, match="fewer than the 4"):
        ChangelogStore(config, PARAMS, Metrics()).load(0)
