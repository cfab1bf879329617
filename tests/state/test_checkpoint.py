"""State checkpoints on disk: round trip, fallback, refusal (corrupt, hostile, malformed
content whose checksums hold), an unwritable directory."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import parse_messages
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.state.checkpoint import (
    CURRENT,
    HEADER,
    PREVIOUS,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    decode,
    digest,
    encode,
)
from tests.support.models import random_stepper

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
    store = CheckpointStore(tmp_path, PARAMS, Metrics())
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
    CheckpointStore(tmp_path, PARAMS, Metrics()).save(engine.snapshot_partition(0), offset=9)
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
    store = CheckpointStore(tmp_path, PARAMS, Metrics())
    store.save(Engine(PARAMS).snapshot_partition(5), offset=40)
    checkpoint = store.load(5)
    assert checkpoint is not None and checkpoint.offset == 40
    assert checkpoint.state.snapshot.series == [] and len(checkpoint.state.snapshot.stats) == 0
    assert np.array_equal(checkpoint.state.snapshot.partition, np.zeros(0, np.int32))


# --- content a checksum does not catch -------------------------------------------------------
# Every case below re-signs the arrays (a valid SHA-256), as a hostile or buggy writer would:
# the checks after the checksum must refuse it, never SeriesTable.put or the engine later.

Arrays = dict[str, npt.NDArray[Any]]
Header = dict[str, Any]
Change = Callable[[Arrays, Header], None]


def unpack(data: bytes) -> tuple[Arrays, Header]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return arrays, json.loads(arrays.pop(HEADER).tobytes())


def pack(arrays: Arrays, header: Header, sign: bool = True) -> bytes:
    if sign:
        header = header | {"sha256": digest(arrays)}
    buffer = io.BytesIO()
    header_bytes = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(buffer, allow_pickle=False, **(arrays | {HEADER: header_bytes}))
    return buffer.getvalue()


def good_checkpoint(partition: int = 0) -> bytes:
    engine = stepped_engine(3)
    state = replace(engine.snapshot_partition(0), partition=partition)
    snapshot = replace(state.snapshot, partition=np.full(3, partition, np.int32))
    return encode(Checkpoint(replace(state, snapshot=snapshot), 9), PARAMS)


def crafted(change: Change) -> bytes:
    arrays, header = unpack(good_checkpoint())
    change(arrays, header)
    return pack(arrays, header)


def put(name: str, value: Any) -> Change:
    def change(arrays: Arrays, header: Header) -> None:
        arrays[name] = np.asarray(value)

    return change


def poke(name: str, value: Any, field: str = "") -> Change:
    """Set the first element of array ``name`` (of its ``field``, for the statistics)."""

    def change(arrays: Arrays, header: Header) -> None:
        target = arrays[name][field] if field else arrays[name]
        target[(0,) * target.ndim] = value

    return change


def set_header(**fields: Any) -> Change:
    def change(arrays: Arrays, header: Header) -> None:
        header.update(fields)

    return change


def names(*encoded: bytes) -> Change:
    def change(arrays: Arrays, header: Header) -> None:
        arrays["series_utf8"] = np.frombuffer(b"".join(encoded), np.uint8)
        arrays["series_bytes"] = np.array([len(e) for e in encoded], np.int64)

    return change


def drop(name: str) -> Change:
    def change(arrays: Arrays, header: Header) -> None:
        del arrays[name]

    return change


CORRUPT: dict[str, Change] = {
    "nan statistic": poke("stats", np.nan, "scale_sq"),
    "inf in the head": poke("stats", np.inf, "head_gram"),
    "negative price": poke("stats", -1.0, "last_price"),
    "negative n_returns": poke("stats", -1, "n_returns"),
    "nan recurrent state": poke("recurrent", np.nan),
    "inf ring z": poke("ring_z", -np.inf),
    "nan ring d": poke("ring_d", np.nan),
    "nan last forecast": poke("last_forecast", np.nan),
    "negative ring count": poke("ring_count", -5),
    "foreign partition": poke("partition", 7),
    "ring of float64": lambda a, h: a.update(ring_d=a["ring_d"].astype(np.float64)),
    "big-endian forecasts": lambda a, h: a.update(last_forecast=a["last_forecast"].astype(">f8")),
    "statistics of another dtype": put("stats", np.zeros(3)),
    "flat recurrent": lambda a, h: a.update(recurrent=a["recurrent"].reshape(-1)),
    "short ring": lambda a, h: a.update(ring_z=a["ring_z"][:, :4]),
    "one series too few": lambda a, h: a.update(ring_count=a["ring_count"][:2]),
    "object array as text": put("partition", np.array(["0", "0", "0"])),
    "missing array": drop("ring_ts"),
    "extra array": put("payload", np.zeros(1)),
    "name lengths past the text": put("series_bytes", np.array([1, 1, 10**12])),
    "negative name length": put("series_bytes", np.array([2, -1, 2])),
    "invalid utf-8": names(b"A", b"\xff", b"C"),
    "utf-8 surrogate": names(b"A", b"\xed\xa0\x80", b"C"),
    "empty name": names(b"A", b"", b"BC"),
    "repeated name": names(b"A", b"B", b"A"),
    "series count": set_header(series=4),
    "offset as text": set_header(offset="9"),
    "negative offset": set_header(offset=-1),
    "offset float": set_header(offset=9.0),
    "offset bool": set_header(offset=True),
    "partition null": set_header(partition=None),
    "huge partition": set_header(partition=10**30),
    "model version a path": set_header(model_version="../../etc/passwd"),
    "model version a list": set_header(model_version=["x"]),
}


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


def test_a_checkpoint_of_another_partition_is_refused_not_silently_skipped(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    store = CheckpointStore(tmp_path, PARAMS, metrics)
    store.folder(2).mkdir(parents=True)
    (store.folder(2) / CURRENT).write_bytes(good_checkpoint(partition=5))
    assert decode(good_checkpoint(partition=5), PARAMS).state.partition == 5  # whole in itself
    assert store.load(2) is None
    assert refusals(metrics, "incompatible") == 1


@given(
    array=st.sampled_from(["stats", "last_forecast", "recurrent", "ring_z", "ring_d", "ring_ts",
                           "ring_count", "partition", "series_bytes", "series_utf8"]),
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
