import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.core.ticks.format import MAX_SERIES_CHARS, RejectReason
from forecaster.core.ticks.json_messages import parse_messages
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
