"""The Kafka changelog state store: chunk assembly rules, and a real broker round trip."""

from __future__ import annotations

from dataclasses import replace

import pytest

from forecaster.checkpoint import Checkpoint, encode
from forecaster.config import Settings
from forecaster.engine import Engine, EngineParams
from forecaster.io.changelog import (
    ChangelogError,
    ChangelogStore,
    Chunk,
    chunk_records,
    whole_checkpoints,
)
from forecaster.metrics import Metrics
from forecaster.ticks import parse_messages
from tests.io.test_kafka import broker, settings  # noqa: F401 (fixtures)
from tests.support.broker import admin_client, create_topics

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


def stepped_engine(series: int) -> Engine:
    engine = Engine(PARAMS)
    messages = [f'{{"series":"S{i}","ts":{t},"price":{1 + t}}}'.encode()
                for t in range(1, 4) for i in range(series)]  # fmt: skip
    engine.process(parse_messages(messages).ticks)
    return engine


@pytest.mark.kafka
def test_checkpoints_round_trip_through_the_broker_in_chunks_newest_first(
    settings: Settings,  # noqa: F811 (the fixture)
) -> None:
    config = replace(settings, state_store="kafka", changelog_topic=settings.input_topic + ".state")
    create_topics(config.bootstrap_servers, {config.input_topic: 3})
    engine = stepped_engine(1000)  # more than two chunks
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
    settings: Settings,  # noqa: F811 (the fixture)
) -> None:
    config = replace(settings, state_store="kafka", changelog_topic=settings.input_topic + ".state")
    create_topics(config.bootstrap_servers, {config.input_topic: 4, config.changelog_topic: 2})
    with pytest.raises(ChangelogError, match="fewer than the 4"):
        ChangelogStore(config, PARAMS, Metrics()).load(0)
