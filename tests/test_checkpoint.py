"""State checkpoints on disk: round trip, fallback, refusal, an unwritable directory."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from forecaster.checkpoint import CURRENT, PREVIOUS, CheckpointError, CheckpointStore, decode
from forecaster.engine import Engine, EngineParams
from forecaster.features import FeatureParams
from forecaster.metrics import Metrics
from forecaster.model.spec import ModelSpec
from forecaster.ticks import parse_messages
from tests.support_models import random_stepper

PARAMS = EngineParams(features=FeatureParams(min_history=2), ring_length=8)


def stepped_engine(ticks: int) -> Engine:
    engine = Engine(PARAMS, model=random_stepper(ModelSpec(cell="gru", layers=1, units=4)))
    for t in range(ticks):
        messages = [
            f'{{"series":"{name}","ts":{1000 * t},"price":{10 + t % 3 + k}}}'.encode()
            for k, name in enumerate(["A", "B", "ü-C"])
        ]
        engine.process(parse_messages(messages).ticks)
    return engine


def refusals(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "forecaster_checkpoint_refused_total", {"reason": reason}
    )
    return value or 0.0


def test_a_restored_partition_forecasts_exactly_as_the_uninterrupted_one(tmp_path: Path) -> None:
    engine = stepped_engine(6)
    store = CheckpointStore(tmp_path, PARAMS)
    assert store.save(engine.snapshot_partition(0), offset=18)

    restored = Engine(PARAMS, model=engine.model)
    checkpoint = store.load(0)
    assert checkpoint is not None and checkpoint.offset == 18
    restored.put_partition(checkpoint.state)
    nxt = parse_messages([b'{"series":"B","ts":99000,"price":11.5}']).ticks
    want, got = engine.process(nxt).forecasts, restored.process(nxt).forecasts
    assert not got.naive[0] and got.forecast.tolist() == want.forecast.tolist()
    assert sorted(restored.table.slot_of) == ["A", "B", "ü-C"]


def test_a_corrupt_current_falls_back_to_previous_and_is_counted(tmp_path: Path) -> None:
    engine, metrics = stepped_engine(3), Metrics()
    store = CheckpointStore(tmp_path, PARAMS, metrics)
    store.save(engine.snapshot_partition(0), offset=9)
    store.save(engine.snapshot_partition(0), offset=12)
    current = store.folder(0) / CURRENT
    data = bytearray(current.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside the arrays
    current.write_bytes(bytes(data))

    checkpoint = store.load(0)
    assert checkpoint is not None and checkpoint.offset == 9  # the previous one
    assert refusals(metrics, "corrupt") + refusals(metrics, "unreadable") == 1


def test_truncated_and_incompatible_checkpoints_are_refused_with_a_reason(tmp_path: Path) -> None:
    engine = stepped_engine(3)
    CheckpointStore(tmp_path, PARAMS).save(engine.snapshot_partition(0), offset=9)
    path = tmp_path / "partition-0" / CURRENT
    with pytest.raises(CheckpointError) as refused:
        decode(path, replace(PARAMS, ring_length=16))
    assert refused.value.reason == "incompatible"

    path.write_bytes(path.read_bytes()[:-100])
    metrics = Metrics()
    assert CheckpointStore(tmp_path, PARAMS, metrics).load(0) is None  # no previous to use
    assert refusals(metrics, "unreadable") == 1


def test_an_unwritable_directory_fails_the_checkpoint_not_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "blocked"  # root writes anywhere: a file where a folder must be
        blocker.write_text("")
        root = blocker / "state"
    else:
        root = tmp_path / "read-only"
        root.mkdir(mode=0o500)
    metrics = Metrics()
    store = CheckpointStore(root, PARAMS, metrics)
    assert not store.save(stepped_engine(2).snapshot_partition(0), offset=6)
    assert metrics.registry.get_sample_value("forecaster_checkpoint_failures_total") == 1
    assert "checkpoint of partition 0 at offset 6 failed" in caplog.text
    assert not (store.folder(0) / PREVIOUS).exists()


def test_an_empty_partition_is_a_checkpoint_too(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, PARAMS)
    store.save(Engine(PARAMS).snapshot_partition(5), offset=40)
    checkpoint = store.load(5)
    assert checkpoint is not None and checkpoint.offset == 40
    assert checkpoint.state.snapshot.series == [] and len(checkpoint.state.snapshot.stats) == 0
    assert np.array_equal(checkpoint.state.snapshot.partition, np.zeros(0, np.int32))
