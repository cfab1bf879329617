import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.core.ticks import json_messages
from forecaster.core.ticks.format import MAX_SERIES_CHARS, RejectReason
from forecaster.core.ticks.json_messages import (
    _decoded,
    _decoded_exactly,
    _orjson_value,
    parse_messages,
)
from forecaster.core.ticks.rules import Rows
from tests.support.ticks import tick


def one(payload: bytes) -> RejectReason | None:
    batch = parse_messages([payload])
    assert batch.received == 1
    assert len(batch.ticks) + len(batch.rejects) == 1
    return batch.rejects[0].reason if batch.rejects else None


def test_valid_tick_becomes_columns() -> None:
    batch = parse_messages([tick(volume=10, extra="ignored")])
    assert batch.rejects == []
    assert batch.ticks.series == ["AAPL"]
    assert batch.ticks.ts.tolist() == [pd.Timestamp("2026-01-05T14:30:00.250Z").value]
    assert batch.ticks.price.tolist() == [189.5]
    assert batch.ticks.volume.tolist() == [10.0]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", RejectReason.NOT_UTF8),
        (b"{not json", RejectReason.INVALID_JSON),
        (b"[1, 2]", RejectReason.NOT_AN_OBJECT),
        (tick(series=...), RejectReason.MISSING_SERIES),
        (tick(ts=...), RejectReason.MISSING_TS),
        (tick(price=...), RejectReason.MISSING_PRICE),
        (tick(price=None), RejectReason.MISSING_PRICE),
        (tick(series=7), RejectReason.SERIES_TYPE),
        (tick(series=""), RejectReason.SERIES_LENGTH),
        (tick(series="x" * (MAX_SERIES_CHARS + 1)), RejectReason.SERIES_LENGTH),
        (tick(ts=1.5e12), RejectReason.TS_TYPE),
        (tick(ts=True), RejectReason.TS_TYPE),
        (tick(ts="yesterday"), RejectReason.TS_FORMAT),
        (tick(ts="1700000000000"), RejectReason.TS_FORMAT),
        (tick(ts="2026-02-30T00:00:00Z"), RejectReason.TS_FORMAT),
        (tick(ts="2026-01-05T14:30:00"), RejectReason.TS_NO_TIMEZONE),
        (tick(ts=-1), RejectReason.TS_OUT_OF_RANGE),
        (tick(ts=10**16), RejectReason.TS_OUT_OF_RANGE),
        (tick(price="189.5"), RejectReason.PRICE_TYPE),
        (tick(price=True), RejectReason.PRICE_TYPE),
        (b'{"series":"A","ts":1,"price":NaN}', RejectReason.PRICE_NOT_FINITE),
        (b'{"series":"A","ts":1,"price":Infinity}', RejectReason.PRICE_NOT_FINITE),
        (b'{"series":"A","ts":1,"price":1e999}', RejectReason.PRICE_NOT_FINITE),
        (tick(price=10**400), RejectReason.PRICE_NOT_FINITE),
        (tick(price=0), RejectReason.PRICE_NOT_POSITIVE),
        (tick(price=-2.5), RejectReason.PRICE_NOT_POSITIVE),
        (tick(volume="many"), RejectReason.VOLUME_TYPE),
        (tick(volume=-1), RejectReason.VOLUME_INVALID),
        (b'{"series":"A","ts":1,"price":1,"volume":NaN}', RejectReason.VOLUME_INVALID),
    ],
)
def test_each_rule_has_its_reason(payload: bytes, reason: RejectReason) -> None:
    assert one(payload) is reason


def test_rejects_keep_raw_bytes_and_positions() -> None:
    payloads = [tick(), b"\x00garbage", tick(price=-1)]
    batch = parse_messages(payloads)
    assert batch.ticks.position.tolist() == [0]
    assert [(r.position, r.raw) for r in batch.rejects] == [(1, payloads[1]), (2, payloads[2])]
    assert all(r.detail for r in batch.rejects)


@given(st.lists(st.binary(max_size=80) | st.builds(tick, price=st.floats()), max_size=20))
def test_every_message_is_accepted_or_rejected_exactly_once(payloads: list[bytes]) -> None:
    batch = parse_messages(payloads)
    positions = batch.ticks.position.tolist() + [r.position for r in batch.rejects]
    assert sorted(positions) == list(range(len(payloads)))
    assert np.all(batch.ticks.price > 0) and np.all(np.isfinite(batch.ticks.price))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (tick(price=1e308), RejectReason.PRICE_OUT_OF_RANGE),
        (tick(price=-0.0), RejectReason.PRICE_NOT_POSITIVE),
        (tick(price=5e-324), RejectReason.PRICE_OUT_OF_RANGE),
        (tick(ts=10**4000), RejectReason.TS_OUT_OF_RANGE),
        (tick(ts=-(2**63) - 1), RejectReason.TS_OUT_OF_RANGE),
        (tick(volume=10**400), RejectReason.VOLUME_INVALID),
        (b'{"series": "A", "ts": 1, "price": 1%s}' % (b"0" * 5000), RejectReason.INVALID_JSON),
        (b'{"series": "A", "ts": 1, "price": 1, "x": %s}' % (b"[" * 8000 + b"]" * 8000),
         RejectReason.INVALID_JSON),
        (b"\xef\xbb\xbf" + tick(), RejectReason.INVALID_JSON),
        (tick() + b"\x00", RejectReason.INVALID_JSON),
        (b"\x00", RejectReason.INVALID_JSON),
        (b"", RejectReason.INVALID_JSON),
        (b"null", RejectReason.NOT_AN_OBJECT),
        (tick(series=1.5), RejectReason.SERIES_TYPE),
        (tick(series=None, ts=None), RejectReason.MISSING_SERIES),
        (tick(volume="1"), RejectReason.VOLUME_TYPE),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, bytes) else None,
)  # fmt: skip
def test_hostile_values_are_rejected_not_raised_on(payload: bytes, reason: RejectReason) -> None:
    (reject,) = parse_messages([payload, tick()]).rejects
    assert reject.reason is reason
    assert len(reject.detail) < 200 and reject.detail.isprintable()


def test_of_a_key_given_twice_the_last_value_counts() -> None:
    batch = parse_messages([b'{"series": "A", "series": "B", "ts": 1, "price": 1}'])
    assert batch.ticks.series == ["B"]


def test_deep_nesting_is_refused_whatever_the_recursion_limit() -> None:
    deep = b'{"series": "A", "ts": 1, "price": 1, "x": ' + b"[" * 500 + b"]" * 500 + b"}"
    wide = b'{"series": "A", "ts": 1, "price": 1, "x": [' + b",".join([b"[[]]"] * 100) + b"]}"
    limit = sys.getrecursionlimit()
    try:
        for recursion_limit in (1000, 100_000):  # TensorFlow raises it, for one
            sys.setrecursionlimit(recursion_limit)
            batch = parse_messages([deep, wide])
            assert [r.reason for r in batch.rejects] == [RejectReason.INVALID_JSON]
            assert "deeper than" in batch.rejects[0].detail
            assert batch.ticks.position.tolist() == [1]
    finally:
        sys.setrecursionlimit(limit)


# --- orjson decodes as json.loads does ------------------------------------------------------

FIELDS = ("series", "ts", "price", "volume")
EDGE_PAYLOADS = [
    b'{"series":"A","ts":1,"price":NaN}', b'{"series":"A","ts":1,"price":-Infinity}',
    b'{"series":"A","ts":1,"price":1e400}', b'{"series":"A","ts":1,"price":-0.0}',
    b'{"series":"A","ts":18446744073709551616,"price":1}',
    b'{"series":"A","ts":-9223372036854775809,"price":1}',
    b'{"series":"A","ts":9223372036854775807,"price":1e-5}',
    b'{"series":123456789012345678901234,"ts":1,"price":123456789012345678901234567}',
    b'{"series":"\\ud800","ts":1,"price":1}', b'{"series":"\\u65e5\\u7d4c225","ts":1,"price":1}',
    '{"series":"日経225 \\"quoted\\" \\\\ back","ts":"2026-01-05T14:30:00Z","price":1}'.encode(),
    b'{"series":"A","ts":1,"price":1,"x":[1e400]}', b'12345678901234567890123', b"null", b"",
    b'\xef\xbb\xbf{"series":"A","ts":1,"price":1}', b'{"series":"A","ts":1,"price":1} x',
    b'{"series":"\xed\xa0\x80","ts":1,"price":1}', b' \t\n{"series":"A","ts":1,"price":1}\r\n',
    b'{"series":"A","ts":1,"price":1,"x":' + b"[" * 70 + b"]" * 70 + b"}",
]  # fmt: skip
scalars = (
    st.none() | st.booleans() | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@st.composite
def json_payloads(draw: st.DrawFn) -> bytes:
    """A message as producers send them, valid or not: an object with (some of) the tick's
    fields of any JSON type, in ASCII or raw UTF-8 (lone surrogates as bytes that are not
    UTF-8), sometimes with a byte changed."""
    fields = {name: draw(values) for name in FIELDS if draw(st.booleans())}
    extra = draw(st.dictionaries(st.text(max_size=4), values, max_size=2))
    obj = draw(st.sampled_from([fields | extra, extra | fields, draw(values)]))
    ascii_only = draw(st.booleans())
    payload = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if payload and draw(st.booleans()):
        at = draw(st.integers(0, len(payload) - 1))
        payload = payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1 :]
    return payload


@st.composite
def usual_ticks(draw: st.DrawFn) -> bytes:
    """The usual tick (a string series, a string or integer ts, a float price, maybe a
    float volume, nothing else), valid or not: parsing takes it by a path of its own."""
    tick = {"series": draw(st.sampled_from(["A", "EUR/USD", "日経225"]) | st.text(max_size=12)),
            "ts": draw(st.integers(0, 10**13) | st.sampled_from(["2026-01-05T14:30:00.25Z"])
                       | st.text(max_size=30) | st.integers(-(10**20), 10**20)),
            "price": draw(st.floats(0.01, 1e6) | st.floats())}  # fmt: skip
    if draw(st.booleans()):
        tick["volume"] = draw(st.floats(0, 1e9) | st.floats())
    return json.dumps(tick, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def decoded_by_orjson(rows: Rows, i: int, payload: bytes) -> Any:
    return _decoded(rows, i, payload, _orjson_value(payload))


def what_decoding_gives(decode: Callable[[Rows, int, bytes], Any], payload: bytes) -> Any:
    """What parsing reads of a decoded message: the reject, or for an object each tick
    field's presence and value (a value that is no scalar only by its type, as parsing
    reads it), or what else it is; repr tells 1 from 1.0 and 0.0 from -0.0."""
    rows = Rows(1)
    obj = decode(rows, 0, payload)
    if rows.failed[0]:
        return rows.reason[0], rows.detail[0]
    if not isinstance(obj, dict):
        return repr(obj)
    return [(name in obj, read_as(name, obj.get(name))) for name in FIELDS]


def read_as(field: str, value: Any) -> str:
    """A field's value as parsing reads it: a number's price or volume as the float it
    becomes, a value that is no scalar by its type alone."""
    if field in ("price", "volume") and type(value) in (int, float):
        try:
            return repr(float(value))
        except OverflowError:
            return "inf"
    return repr(value) if isinstance(value, str | int | float | None) else type(value).__name__


@pytest.mark.parametrize("payload", EDGE_PAYLOADS, ids=lambda p: repr(p)[:40])
def test_edge_messages_decode_as_json_loads_decodes_them(payload: bytes) -> None:
    exactly = what_decoding_gives(_decoded_exactly, payload)
    assert what_decoding_gives(decoded_by_orjson, payload) == exactly


@settings(max_examples=1000, deadline=None)
@given(json_payloads())
def test_generated_messages_decode_as_json_loads_decodes_them(payload: bytes) -> None:
    exactly = what_decoding_gives(_decoded_exactly, payload)
    assert what_decoding_gives(decoded_by_orjson, payload) == exactly


@given(st.lists(json_payloads() | usual_ticks(), max_size=8))
def test_a_batch_parses_to_the_same_ticks_and_rejects_as_json_loads_alone(
    payloads: list[bytes],
) -> None:
    fast = parse_messages(payloads)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_messages, "_took_usual_tick", lambda rows, i, obj: False)
        patch.setattr(json_messages, "_decoded",
                      lambda rows, i, payload, obj: _decoded_exactly(rows, i, payload))  # fmt: skip
        exact = parse_messages(payloads)
    assert [(r.position, r.reason, r.detail) for r in fast.rejects] == [
        (r.position, r.reason, r.detail) for r in exact.rejects
    ]
    for column in ("position", "ts", "price", "volume"):
        assert getattr(fast.ticks, column).tobytes() == getattr(exact.ticks, column).tobytes()
    assert fast.ticks.series == exact.ticks.series
