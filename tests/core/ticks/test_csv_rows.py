from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.core.ticks.csv_rows import parse_csv_frame
from forecaster.core.ticks.format import RejectReason
from tests.support.ticks import read_csv


def test_csv_rows_follow_the_same_rules() -> None:
    frame = read_csv(
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
