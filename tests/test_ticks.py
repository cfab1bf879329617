import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.ticks import MAX_SERIES_CHARS, RejectReason, parse_csv_frame, parse_messages


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


@settings(max_examples=30)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A", "B", ""]),
            CSV_TEXT | st.integers(0, 10**20).map(str),
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
    outcomes = {r.position: (r.reason, r.detail, r.raw) for r in whole.rejects}
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
