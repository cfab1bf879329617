import io
import json
import logging
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forecaster.core.ticks as ticks_module
from forecaster.core.ticks import (
    MAX_SERIES_CHARS,
    InputLimits,
    RejectReason,
    parse_csv_frame,
    parse_messages,
    rfc3339_ns,
)


def one(payload: bytes) -> RejectReason | None:
    batch = parse_messages([payload])
    assert batch.received == 1
    assert len(batch.ticks) + len(batch.rejects) == 1
    return batch.rejects[0].reason if batch.rejects else None


def tick(**fields: object) -> bytes:
    base: dict[str, object] = {"series": "AAPL", "ts": "2026-01-05T14:30:00.250Z", "price": 189.5}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_valid_tick_becomes_columns() -> None:
    batch = parse_messages([tick(volume=10, extra="ignored")])
    assert batch.rejects == []
    assert batch.ticks.series == ["AAPL"]
    assert batch.ticks.ts.tolist() == [pd.Timestamp("2026-01-05T14:30:00.250Z").value]
    assert batch.ticks.price.tolist() == [189.5]
    assert batch.ticks.volume.tolist() == [10.0]


@pytest.mark.parametrize(
    ("ts", "expected_ns"),
    [
        (1_700_000_000_123, 1_700_000_000_123_000_000),
        ("2023-11-14T22:13:20.123Z", 1_700_000_000_123_000_000),
        ("2023-11-15T00:13:20.123+02:00", 1_700_000_000_123_000_000),
        ("2023-11-14t22:13:20.123z", 1_700_000_000_123_000_000),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789),
    ],
)
def test_timestamp_forms(ts: object, expected_ns: int) -> None:
    batch = parse_messages([tick(ts=ts)])
    assert batch.ticks.ts.tolist() == [expected_ns]


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


def read(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def test_csv_rows_follow_the_same_rules() -> None:
    frame = read(
        "series,ts,price,volume\n"
        "A,2026-01-05T00:00:00Z,1.5,\n"
        "A,1767571201000,2,7\n"
        "A,1767571202000,abc,\n"
        "A,1767571203000,NaN,\n"
        "B,,1,\n"
        ",5,1,\n"
        "A,5,1,lots\n"
        "A,99999999999999999,1,\n"
    )
    batch = parse_csv_frame(frame, first_position=10)
    assert batch.ticks.position.tolist() == [10, 11]
    assert np.isnan(batch.ticks.volume[0]) and batch.ticks.volume[1] == 7.0
    assert [(r.position, r.reason) for r in batch.rejects] == [
        (12, RejectReason.PRICE_TYPE),
        (13, RejectReason.PRICE_NOT_FINITE),
        (14, RejectReason.MISSING_TS),
        (15, RejectReason.MISSING_SERIES),
        (16, RejectReason.VOLUME_TYPE),
        (17, RejectReason.TS_OUT_OF_RANGE),
    ]
    assert batch.rejects[0].raw == b"A,1767571202000,abc,"


# 1767571201000 in Arabic-Indic digits, which int() reads as it reads ASCII ones
ARABIC_INDIC_DIGITS = "".join(chr(0x0660 + int(d)) for d in "1767571201000")


@pytest.mark.parametrize(
    ("ts", "price", "expected"),
    [
        ("0001767571201000", "1.5", (1_767_571_201_000_000_000, 1.5)),
        ("+1767571201000", " 2", (1_767_571_201_000_000_000, 2.0)),
        (ARABIC_INDIC_DIGITS, "3", (1_767_571_201_000_000_000, 3.0)),
        ("1767571201000", "4\u00a0", (1_767_571_201_000_000_000, 4.0)),
        ("999999999999999999", "1", RejectReason.TS_OUT_OF_RANGE),
        ("9999999999999999999", "1", RejectReason.TS_OUT_OF_RANGE),
        (" 1767571201000", "1", RejectReason.TS_FORMAT),
        ("1767571201000\x00", "1", RejectReason.TS_FORMAT),
        ("1767571201000", " nan", RejectReason.PRICE_NOT_FINITE),
        ("1767571201000", "1_000", RejectReason.PRICE_TYPE),
    ],
)
def test_csv_digits_and_numbers_read_alike_alone_or_among_plain_rows(
    ts: str, price: str, expected: tuple[int, float] | RejectReason
) -> None:
    """Plain digit timestamps and plain numbers are read a whole chunk at a time; any other
    text row by row. Either way a row comes out the same, next to plain rows or alone."""
    plain = pd.DataFrame({"series": ["P"] * 3, "ts": ["1767571200000"] * 3, "price": ["1.5"] * 3})
    row = pd.DataFrame({"series": ["A"], "ts": [ts], "price": [price]})
    alone = parse_csv_frame(row)
    among = parse_csv_frame(pd.concat([plain, row, plain], ignore_index=True))
    for batch in (alone, among):
        if isinstance(expected, RejectReason):
            assert [r.reason for r in batch.rejects] == [expected]
        else:
            accepted = batch.ticks.series.index("A")
            assert (batch.ticks.ts[accepted], batch.ticks.price[accepted]) == expected
    assert [(r.reason, r.detail) for r in alone.rejects] == [
        (r.reason, r.detail) for r in among.rejects
    ]


CSV_TEXT = st.sampled_from(
    ["", "1", "0", "-1", "+1", " 1", "1 ", "nan", "inf", "1e3", "x", "\u0661"]
)
# Timestamps pandas reads in different units, or not at all, depending on their neighbours
CSV_STAMP = st.sampled_from(
    ["2026-01-05T00:00:00Z", "2023-11-14T22:13:20.123456789Z", "5000-01-01T00:00:00Z",
     "1600-01-01T00:00:00.5Z", "2016-12-31T23:59:60Z", "2026-01-05 00:00:00+01:00"]
)  # fmt: skip


@settings(max_examples=30)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "", " B", "A\x00", "\udcff"]),
            CSV_TEXT | CSV_STAMP | st.integers(0, 10**20).map(str),
            CSV_TEXT | st.floats(allow_nan=False).map(repr),
            CSV_TEXT,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_csv_row_parses_the_same_in_any_chunk(rows: list[tuple[str, str, str, str]]) -> None:
    frame = pd.DataFrame(rows, columns=["series", "ts", "price", "volume"], dtype=str)
    whole = parse_csv_frame(frame, first_position=5)
    outcomes: dict[int, tuple[Any, ...]] = {
        r.position: (r.reason, r.detail, r.raw) for r in whole.rejects
    }
    outcomes.update(
        (int(p), (s, int(t), float(x))) for p, s, t, x in zip(
            whole.ticks.position, whole.ticks.series, whole.ticks.ts, whole.ticks.price,
            strict=True)
    )  # fmt: skip
    for i in range(len(frame)):
        alone = parse_csv_frame(frame.iloc[[i]].reset_index(drop=True), first_position=5 + i)
        if alone.rejects:
            (r,) = alone.rejects
            assert outcomes[5 + i] == (r.reason, r.detail, r.raw)
        else:
            ticks = alone.ticks
            assert outcomes[5 + i] == (ticks.series[0], int(ticks.ts[0]), float(ticks.price[0]))


@given(st.lists(st.binary(max_size=80) | st.builds(tick, price=st.floats()), max_size=20))
def test_every_message_is_accepted_or_rejected_exactly_once(payloads: list[bytes]) -> None:
    batch = parse_messages(payloads)
    positions = batch.ticks.position.tolist() + [r.position for r in batch.rejects]
    assert sorted(positions) == list(range(len(payloads)))
    assert np.all(batch.ticks.price > 0) and np.all(np.isfinite(batch.ticks.price))


def series_tick(escaped: str) -> bytes:
    """A tick whose series is ``escaped`` as written inside a JSON string."""
    return b'{"series": "%s", "ts": 1767571200000, "price": 1.5}' % escaped.encode()


@pytest.mark.parametrize(
    "series",
    ["EUR/USD", "日経225", "BRK.B", "ES 2026-03", "Ω-1", "\U0001f468\u200d\U0001f469", "\ue000x"],
)
def test_ordinary_series_ids_are_accepted(series: str) -> None:
    batch = parse_messages([json.dumps({"series": series, "ts": 1, "price": 1.0}).encode()])
    assert batch.ticks.series == [series]


@pytest.mark.parametrize(
    ("escaped", "detail"),
    [
        ("\\ud800", "a surrogate (U+D800) at index 0"),
        ("A\\udfff", "a surrogate (U+DFFF) at index 1"),
        ("A\\u0000", "a control character (U+0000) at index 1"),
        ("A\\tB", "a control character (U+0009) at index 1"),
        ("A\\u007f", "a control character (U+007F) at index 1"),
        ("A\\u0085", "a control character (U+0085) at index 1"),
        ("A\\u2028", "a line separator (U+2028) at index 1"),
        ("A\\u2029", "a paragraph separator (U+2029) at index 1"),
        ("\\u202eLPAA", "an invisible format character (U+202E) at index 0"),
        ("AA\\u200bPL", "an invisible format character (U+200B) at index 2"),
        ("\\ufeffAAPL", "an invisible format character (U+FEFF) at index 0"),
        ("A\\ufdd0", "a noncharacter (U+FDD0) at index 1"),
        ("A\\uffff", "a noncharacter (U+FFFF) at index 1"),
        ("A\\udbff\\udfff", "a noncharacter (U+10FFFF) at index 1"),
        (" AAPL", "whitespace at an end"),
        ("AAPL ", "whitespace at an end"),
        ("AAPL\\u00a0", "whitespace at an end"),
        ("\\u3000AAPL", "whitespace at an end"),
    ],
)
def test_series_ids_that_cannot_be_printed_or_sent_are_invalid(escaped: str, detail: str) -> None:
    (reject,) = parse_messages([series_tick(escaped)]).rejects
    assert (reject.reason, reject.detail) == (RejectReason.SERIES_INVALID, f"series has {detail}")


def test_a_surrogate_pair_escape_is_one_character_and_fine() -> None:
    assert parse_messages([series_tick("\\ud83d\\ude00")]).ticks.series == ["\U0001f600"]


def test_csv_series_ids_follow_the_same_rule() -> None:
    names = ["A\x00", "A ", "\ud800", "\u2028", "日経225", "EUR/USD"]
    frame = pd.DataFrame({"series": names, "ts": ["1", "2", "3", "4", "5", "6"], "price": "1"})
    batch = parse_csv_frame(frame)
    assert batch.ticks.series == ["日経225", "EUR/USD"]
    assert [r.reason for r in batch.rejects] == [RejectReason.SERIES_INVALID] * 2 + [
        RejectReason.NOT_UTF8  # a lone surrogate is how a CSV byte that is not UTF-8 reads
    ] + [RejectReason.SERIES_INVALID]


def test_a_csv_row_with_bytes_that_are_not_utf8_keeps_them() -> None:
    frame = pd.DataFrame({"series": ["A\udcff", "A"], "ts": ["1", "2\udcc3"], "price": "1"})
    batch = parse_csv_frame(frame, first_position=4)
    assert [(r.position, r.reason, r.raw) for r in batch.rejects] == [
        (4, RejectReason.NOT_UTF8, b"A\xff,1,1"),
        (5, RejectReason.NOT_UTF8, b"A,2\xc3,1"),
    ]


NOW_NS = 1_767_571_200_000_000_000
SKEW = InputLimits(max_future_skew_ns=60 * 10**9)


@pytest.mark.parametrize(
    ("ts_ms", "limits", "now_ns", "reason"),
    [
        (NOW_NS // 10**6 + 60_000, SKEW, NOW_NS, None),
        (NOW_NS // 10**6 + 60_001, SKEW, NOW_NS, RejectReason.TS_IN_FUTURE),
        (NOW_NS // 10**6 + 60_001, SKEW, None, None),
        (NOW_NS // 10**6 + 10**9, InputLimits(), NOW_NS, None),
        (NOW_NS // 10**6 - 10**9, SKEW, NOW_NS, None),
    ],
)
def test_ticks_too_far_ahead_of_the_clock_are_in_the_future(
    ts_ms: int, limits: InputLimits, now_ns: int | None, reason: RejectReason | None
) -> None:
    batch = parse_messages([tick(ts=ts_ms)], limits, now_ns=now_ns)
    assert [r.reason for r in batch.rejects] == ([reason] if reason else [])


def test_the_future_detail_says_how_far_ahead() -> None:
    stamp = "2026-01-05T00:05:00Z"  # 300 s after NOW_NS
    (reject,) = parse_messages([tick(ts=stamp)], SKEW, now_ns=NOW_NS).rejects
    assert reject.detail == f"ts {stamp!r} is 300.000 s ahead of the clock (at most 60 s allowed)"


def test_a_negative_future_skew_is_refused() -> None:
    with pytest.raises(ValueError, match="max_future_skew_ns"):
        InputLimits(max_future_skew_ns=-1)


class PoisonError(Exception):
    """What a bug, or a value numpy or pandas choke on, raises inside the parser."""


def poison_price(monkeypatch: pytest.MonkeyPatch, price: float) -> None:
    """Make the parser raise while checking any batch holding a tick of ``price``."""
    check_price = ticks_module._check_price

    def checking(rows: Any) -> None:
        if np.any(rows.price == price):
            raise PoisonError(f"price {price} bites\nhard")
        check_price(rows)

    monkeypatch.setattr(ticks_module, "_check_price", checking)


def test_a_message_the_parser_raises_on_is_an_internal_error_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison_price(monkeypatch, 666.0)
    payloads = [tick(price=1.0), tick(price=666.0), tick(price=-1.0), tick(price=2.0)]
    with caplog.at_level(logging.DEBUG, logger="forecaster.faults"):
        batch = parse_messages(payloads)
    assert batch.received == 4
    assert batch.ticks.position.tolist() == [0, 3]
    assert batch.ticks.price.tolist() == [1.0, 2.0]
    assert [(r.position, r.raw, r.reason, r.detail) for r in batch.rejects] == [
        (1, payloads[1], RejectReason.INTERNAL_ERROR, "PoisonError: price 666.0 bites hard"),
        (2, payloads[2], RejectReason.PRICE_NOT_POSITIVE, "price -1.0 is not > 0"),
    ]
    assert any("parsing a tick" in record.getMessage() for record in caplog.records)


def test_a_csv_row_the_parser_raises_on_is_an_internal_error_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison_price(monkeypatch, 666.0)
    frame = read("series,ts,price\nA,1000,1.5\nA,2000,666\nA,3000,2\n")
    batch = parse_csv_frame(frame, first_position=7)
    assert batch.ticks.position.tolist() == [7, 9]
    assert batch.ticks.ts.tolist() == [1000 * 10**6, 3000 * 10**6]
    assert [(r.position, r.raw, r.reason) for r in batch.rejects] == [
        (8, b"A,2000,666", RejectReason.INTERNAL_ERROR)
    ]


def test_a_batch_that_raises_only_as_a_whole_still_parses_every_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_price = ticks_module._check_price

    def raising_on_batches(rows: Any) -> None:
        if len(rows.price) > 1:
            raise PoisonError("only in company")
        check_price(rows)

    monkeypatch.setattr(ticks_module, "_check_price", raising_on_batches)
    payloads = [tick(price=1.0), tick(price=0.0), tick(price=3.0)]
    alone = parse_messages(payloads)
    assert alone.ticks.position.tolist() == [0, 2]
    assert [r.reason for r in alone.rejects] == [RejectReason.PRICE_NOT_POSITIVE]


def ts_tick(ts: str) -> bytes:
    return b'{"series": "A", "ts": "%s", "price": 1}' % ts.encode()


@pytest.mark.parametrize(
    ("ts", "reason", "detail"),
    [
        # pandas reads these years in microseconds: scaled to ns they wrapped around int64,
        # and year 5000 was accepted as 2077.
        ("5000-06-01T00:00:00Z", RejectReason.TS_OUT_OF_RANGE, "is after 2255-03-14"),
        ("2800-06-01T00:00:00Z", RejectReason.TS_OUT_OF_RANGE, "is after 2255-03-14"),
        ("9999-12-31T23:59:59.999999999+23:59", RejectReason.TS_OUT_OF_RANGE, "is after 2255"),
        ("2262-04-11T23:47:16.854775808Z", RejectReason.TS_OUT_OF_RANGE, "is after 2255-03-14"),
        ("0000-01-01T00:00:00Z", RejectReason.TS_OUT_OF_RANGE, "is before 1970"),
        ("1677-09-21T00:12:43.145224191Z", RejectReason.TS_OUT_OF_RANGE, "is before 1970"),
        ("2026-01-01T00:00:00+99:99", RejectReason.TS_FORMAT, "is not a valid time"),
        ("2016-12-31T23:59:60Z", RejectReason.TS_FORMAT, "is not a valid time"),
        ("2026-01-01T24:00:00Z", RejectReason.TS_FORMAT, "is not a valid time"),
        ("\uff12\uff10\uff12\uff16-01-01T00:00:00Z", RejectReason.TS_FORMAT, "is not RFC 3339"),
        ("2026-01-01T00:00:00\\ud800Z", RejectReason.TS_FORMAT, "is not RFC 3339"),
    ],
)
def test_extreme_timestamps_are_rejected_alike_alone_and_among_others(
    ts: str, reason: RejectReason, detail: str
) -> None:
    for neighbour in ("2023-11-14T22:13:20.123456789Z", "2023-11-14T22:13:20Z"):
        batch = parse_messages([ts_tick(neighbour), ts_tick(ts), ts_tick(neighbour)])
        assert len(batch.ticks) == 2
        (reject,) = batch.rejects
        assert reject.reason is reason and detail in reject.detail
        assert reject.detail.isprintable()  # repr escapes any surrogate or control character


def test_rfc3339_ns_refuses_a_time_int64_nanoseconds_cannot_hold() -> None:
    with pytest.raises(ValueError, match="range"):
        rfc3339_ns("5000-01-01T00:00:00Z")


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
