"""Checkpoints for tests: a stepped engine, good checkpoint bytes, and crafted defects.

Every crafted checkpoint re-signs its arrays (a valid SHA-256), as a hostile or buggy
writer would: only the checks after the checksum can refuse it.

    data = crafted(CORRUPT["nan recurrent state"])  # decode() refuses it as corrupt
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.engine import Engine, EngineParams, PartitionState
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import parse_messages
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.state.checkpoint import HEADER, Checkpoint, digest, encode
from tests.support.models import random_stepper

PARAMS = EngineParams(features=FeatureParams(min_history=2), ring_length=8)
SERIES = ["A", "B", "ü-C"]

Arrays = dict[str, npt.NDArray[Any]]
Header = dict[str, Any]
Change = Callable[[Arrays, Header], None]


def stepped_engine(ticks: int) -> Engine:
    """An engine of PARAMS with a random GRU that stepped ``ticks`` ticks of each of SERIES."""
    engine = Engine(PARAMS, model=random_stepper(ModelSpec(cell="gru", layers=1, units=4)))
    for t in range(ticks):
        messages = [
            f'{{"series":"{name}","ts":{1000 * t},"price":{10 + t % 3 + k}}}'.encode()
            for k, name in enumerate(SERIES)
        ]
        engine.process(parse_messages(messages).ticks)
    return engine


def state_of(partition: int, ticks: int = 3) -> PartitionState:
    """The state of SERIES after ``ticks`` ticks, as if they lived on ``partition``."""
    state = replace(stepped_engine(ticks).snapshot_partition(0), partition=partition)
    count = len(state.snapshot.series)
    snapshot = replace(state.snapshot, partition=np.full(count, partition, np.int32))
    return replace(state, snapshot=snapshot)


def good_checkpoint(partition: int = 0) -> bytes:
    """The bytes of a sound checkpoint of ``partition`` at offset 9."""
    return encode(Checkpoint(state_of(partition), 9), PARAMS)


def refusals(metrics: Metrics, reason: str) -> float:
    labels = {"reason": reason}
    return metrics.registry.get_sample_value("forecaster_checkpoint_refused_total", labels) or 0.0


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


def crafted(change: Change, partition: int = 0) -> bytes:
    """A good checkpoint of ``partition`` with ``change`` made to it, signed again."""
    arrays, header = unpack(good_checkpoint(partition))
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


def gap_bits(bits: int) -> Change:
    """Set the gap of the first series' first ring cell to these float16 bits."""

    def change(arrays: Arrays, header: Header) -> None:
        arrays["ring"][0, 0, 3:5] = [bits & 0xFF, bits >> 8]

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


# Signed content the engine cannot step on: decode() refuses each as corrupt.
CORRUPT: dict[str, Change] = {
    "nan statistic": poke("stats", np.nan, "scale_sq"),
    "inf in the head": poke("stats", np.inf, "head_gram"),
    "negative price": poke("stats", -1.0, "last_price"),
    "negative n_returns": poke("stats", -1, "n_returns"),
    "nan recurrent state": poke("recurrent", np.nan),
    "inf gap in the ring": gap_bits(0x7C00),  # float16 infinity
    "nan gap in the ring": gap_bits(0x7E00),
    "nan last forecast": poke("last_forecast", np.nan),
    "negative ring count": poke("ring_count", -5),
    "foreign partition": poke("partition", 7),
    "ring of uint16": lambda a, h: a.update(ring=a["ring"].astype(np.uint16)),
    "big-endian forecasts": lambda a, h: a.update(last_forecast=a["last_forecast"].astype(">f8")),
    "statistics of another dtype": put("stats", np.zeros(3)),
    "flat recurrent": lambda a, h: a.update(recurrent=a["recurrent"].reshape(-1)),
    "short ring": lambda a, h: a.update(ring=a["ring"][:, :4]),
    "one series too few": lambda a, h: a.update(ring_count=a["ring_count"][:2]),
    "object array as text": put("partition", np.array(["0", "0", "0"])),
    "missing array": drop("ring_newest_ts"),
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
