"""State checkpoints: the format's refusals (corrupt, hostile, malformed content whose
checksums hold) and the directory store's own cases (a flipped byte, the fallback from
current to previous, an unwritable directory). What every store keeps is in
test_store_contract.py."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.core.engine import Engine
from forecaster.core.ticks import parse_messages
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.state.checkpoint import (
    CURRENT,
    HEADER,
    PREVIOUS,
    CheckpointError,
    CheckpointStore,
    decode,
)
from tests.support.checkpoints import (
    CORRUPT,
    PARAMS,
    Change,
    crafted,
    good_checkpoint,
    pack,
    refusals,
    stepped_engine,
    unpack,
)
from tests.support.models import random_stepper


def test_a_corrupt_current_falls_back_to_previous_and_is_counted(tmp_path: Path) -> None:
    engine, metrics = stepped_engine(3), Metrics()
    store = CheckpointStore(tmp_path, PARAMS, metrics)
    store.save(engine.snapshot_partition(0), offset=9)
    store.save(engine.snapshot_partition(0), offset=12)
    current = store.folder(0) / CURRENT
    data = bytearray(current.read_bytes())
    stats = zipfile.ZipFile(io.BytesIO(data)).getinfo("stats.npy")
    start = stats.header_offset + 30 + len(stats.filename) + len(stats.extra)  # its bytes
    data[start + stats.compress_size // 2] ^= 0xFF  # one flipped byte inside the arrays
    current.write_bytes(bytes(data))

    checkpoint = store.load(0)
    assert checkpoint is not None and checkpoint.offset == 9  # the previous one
    assert refusals(metrics, "corrupt") + refusals(metrics, "unreadable") == 1


def test_truncated_and_incompatible_checkpoints_are_refused_with_a_reason(tmp_path: Path) -> None:
    engine = stepped_engine(3)
    CheckpointStore(tmp_path, PARAMS, Metrics()).save(engine.snapshot_partition(0), offset=9)
    path = tmp_path / "partition-0" / CURRENT
    with pytest.raises(CheckpointError) as refused:
        decode(path, replace(PARAMS, ring_length=16))
    assert refused.value.reason == "incompatible"

    path.write_bytes(path.read_bytes()[:-100])
    metrics = Metrics()
    assert CheckpointStore(tmp_path, PARAMS, metrics).load(0) is None  # no previous to use
    assert refusals(metrics, "unreadable") == 1


def test_a_checkpoint_of_another_format_is_refused_as_incompatible() -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint of format 4") as refused:
        decode(crafted(lambda arrays, header: header.update(format=2)), PARAMS)
    assert refused.value.reason == "incompatible"


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


# --- content a checksum does not catch -------------------------------------------------------
# Every case below re-signs the arrays (a valid SHA-256), as a hostile or buggy writer would:
# the checks after the checksum must refuse it, never SeriesTable.put or the engine later.


@pytest.mark.parametrize("change", CORRUPT.values(), ids=CORRUPT.keys())
def test_signed_content_the_engine_cannot_step_on_is_refused_as_corrupt(change: Change) -> None:
    with pytest.raises(CheckpointError) as refused:
        decode(crafted(change), PARAMS, "crafted")
    assert refused.value.reason == "corrupt", refused.value


def npy_file() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def compressed() -> bytes:
    arrays, header = unpack(good_checkpoint())
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def with_pickle() -> bytes:
    arrays, header = unpack(good_checkpoint())
    arrays["series_utf8"] = np.array([{"a": 1}], dtype=object)
    buffer = io.BytesIO()
    header_bytes = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(buffer, allow_pickle=True, **(arrays | {HEADER: header_bytes}))
    return buffer.getvalue()


def header_of(text: bytes) -> bytes:
    arrays, _ = unpack(good_checkpoint())
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **(arrays | {HEADER: np.frombuffer(text, np.uint8)}))
    return buffer.getvalue()


UNREADABLE: dict[str, Callable[[], bytes]] = {
    "a pickle": lambda: pickle.dumps({"stats": 1}),
    "a .npy": npy_file,
    "compressed members": compressed,
    "an object array": with_pickle,
    "header not json": lambda: header_of(b"{not json"),
    "header a list": lambda: header_of(b"[1, 2]"),
    "header not utf-8": lambda: header_of(b'{"format": "\xff"}'),
    "header nested too deep": lambda: header_of(b"[" * 100_000),
    "empty": lambda: b"",
}


@pytest.mark.parametrize("make", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_what_is_no_plain_npz_with_a_json_header_is_refused_as_unreadable(
    make: Callable[[], bytes],
) -> None:
    with pytest.raises(CheckpointError) as refused:
        decode(make(), PARAMS, "crafted")
    assert refused.value.reason == "unreadable", refused.value


def test_a_refused_current_falls_back_to_previous_and_with_neither_the_partition_rebuilds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    store = CheckpointStore(tmp_path, PARAMS, metrics)
    store.folder(0).mkdir(parents=True)
    (store.folder(0) / PREVIOUS).write_bytes(good_checkpoint())
    (store.folder(0) / CURRENT).write_bytes(crafted(CORRUPT["nan recurrent state"]))
    checkpoint = store.load(0)
    assert checkpoint is not None and checkpoint.offset == 9
    assert refusals(metrics, "corrupt") == 1
    assert "refused (corrupt): recurrent holds NaN or infinity" in caplog.text

    (store.folder(0) / PREVIOUS).write_bytes(crafted(CORRUPT["repeated name"]))
    assert store.load(0) is None  # the caller consumes the partition from its first offset
    assert refusals(metrics, "corrupt") == 3


@given(
    array=st.sampled_from(["stats", "last_forecast", "recurrent", "ring", "ring_newest_ts",
                           "ring_track_ts", "ring_count", "partition", "series_bytes",
                           "series_utf8"]),
    offset=st.integers(0, 10_000),
    value=st.binary(min_size=1, max_size=8),
)  # fmt: skip
def test_any_signed_byte_change_is_refused_or_steps_without_error(
    array: str, offset: int, value: bytes
) -> None:
    arrays, header = unpack(good_checkpoint())
    raw = bytearray(arrays[array].tobytes())
    start = offset % max(1, len(raw))
    raw[start : start + len(value)] = value[: len(raw) - start]
    arrays[array] = np.frombuffer(bytes(raw), arrays[array].dtype).reshape(arrays[array].shape)
    try:
        checkpoint = decode(pack(arrays, header), PARAMS)
    except CheckpointError:
        return
    engine = Engine(PARAMS, model=random_stepper(ModelSpec(cell="gru", layers=1, units=4)))
    engine.put_partition(checkpoint.state)
    names = checkpoint.state.snapshot.series
    messages = [json.dumps({"series": n, "ts": 10**12, "price": 11.0}).encode() for n in names]
    result = engine.process(parse_messages(messages).ticks)
    assert np.isfinite(result.forecasts.forecast).all()
