import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.core.engine import ForecastBatch
from forecaster.core.ticks import Rejected, RejectReason, TickColumns, parse_messages
from forecaster.io.base import DeadLetter
from forecaster.io.records import (
    dead_letter_record,
    encode_dead_letter,
    encode_forecast_lines,
    encode_forecasts,
    forecast_records,
    format_rfc3339,
    kept_bytes,
    unencodable_rows,
)
from tests.support.forecasts import forecast_batch


def test_rfc3339_keeps_the_precision_each_timestamp_needs() -> None:
    ns = np.array([0, 1_500_000, 1_000, 7], np.int64) + 1_767_571_200 * 10**9
    assert format_rfc3339(ns) == [
        "2026-01-05T00:00:00.000Z",
        "2026-01-05T00:00:00.001500Z",
        "2026-01-05T00:00:00.000001Z",
        "2026-01-05T00:00:00.000000007Z",
    ]


def test_forecast_records_echo_the_tick() -> None:
    ticks = parse_messages(
        [b'{"series":"\\u00e9\\"x","ts":"2026-01-05T01:00:00+01:00","price":2}']
    ).ticks
    batch = forecast_batch(ticks, np.array([2.5]), np.array([False]), "lstm-1")
    record = json.loads(encode_forecasts(batch)[0])
    assert record == {
        "series": 'é"x',
        "ts": "2026-01-05T00:00:00.000Z",
        "price": 2.0,
        "forecast": 2.5,
        "model_version": "lstm-1",
        "lower": 2.5 * 0.99,
        "upper": 2.5 * 1.01,
    }


def test_dead_letters_carry_raw_bytes_reason_and_origin() -> None:
    letter = DeadLetter(
        Rejected(3, b"\xffoops", RejectReason.NOT_UTF8, "bad byte"), {"file": "t.csv", "line": 5}
    )
    record = json.loads(encode_dead_letter(letter))
    assert record["reason"] == "not_utf8" and record["source"] == {"file": "t.csv", "line": 5}
    assert record["raw_base64"] == "/29vcHM=" and "raw" not in record


def test_fast_encoding_is_byte_for_byte_json_dumps() -> None:
    rng = np.random.default_rng(11)
    names = ["plain", 'quo"te', "back\\slash", "tab\tnew\nline", "\u00e9\u4e2d\U0001f600", "\x01"]
    n = 300
    ticks = TickColumns(
        position=np.arange(n),
        series=[names[i] for i in rng.integers(0, len(names), n)],
        ts=rng.integers(0, 4 * 10**18, n),
        price=np.exp(rng.normal(0, 8, n)),
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )
    forecast = ticks.price * np.exp(rng.normal(0, 0.01, n))
    batch = forecast_batch(ticks, forecast, rng.random(n) < 0.3, "v\u00e9")
    expected = [json.dumps(r, ensure_ascii=False).encode() for r in forecast_records(batch)]
    assert encode_forecasts(batch) == expected
    assert encode_forecast_lines(batch) == b"".join(line + b"\n" for line in expected)
    whole_ms = batch.ticks.ts // 1_000_000 * 1_000_000  # one unit for every timestamp
    stamps = (whole_ms // 10**6).astype("datetime64[ms]")
    assert format_rfc3339(whole_ms) == [f"{stamp}Z" for stamp in stamps]
    batch.forecast[7] = np.inf  # JSON has no Infinity: never written, the encoding raises
    with pytest.raises(ValueError, match=r"forecast inf of series .* is not finite"):
        encode_forecasts(batch)


finite = st.floats(allow_nan=False, allow_infinity=False)
forecast_rows = st.tuples(st.text(max_size=8), finite, finite, finite, finite, st.booleans())


@settings(max_examples=500, deadline=None)
@given(st.lists(forecast_rows, max_size=12), st.text(max_size=6))
def test_any_encodable_batch_is_byte_for_byte_json_dumps(
    drawn: list[tuple[str, float, float, float, float, bool]], version: str
) -> None:
    """Numbers of any magnitude (subnormal, -0.0, 1e-05, 1e+16, 1.7e308), series and
    model versions of any characters: escapes, quotes, CJK, emoji, lone surrogates."""
    n = len(drawn)
    column = [[row[i] for row in drawn] for i in range(6)]
    ts, nowhere = np.arange(n, dtype=np.int64) * 10**6, np.full(n, np.nan)
    ticks = TickColumns(np.arange(n), column[0], ts, np.array(column[1], float), nowhere,
                        np.zeros(n, np.int32))  # fmt: skip
    batch = forecast_batch(ticks, np.array(column[2], float), np.array(column[5], bool), version)
    batch.lower[:], batch.upper[:] = column[3], column[4]
    try:
        expected = [json.dumps(r, ensure_ascii=False).encode() for r in forecast_records(batch)]
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it, neither encoding sends it
        with pytest.raises(UnicodeEncodeError):
            encode_forecasts(batch)
        return
    assert encode_forecasts(batch) == expected


series_names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=8)
# Epoch ns of whole milliseconds (the usual tick), of microseconds, of nanoseconds.
timestamps = st.one_of(st.integers(0, 9 * 10**12).map(lambda ms: ms * 10**6),
                       st.integers(0, 9 * 10**15).map(lambda us: us * 1000),
                       st.integers(0, 9 * 10**18))  # fmt: skip


@given(
    st.lists(st.tuples(series_names, timestamps, finite, finite, finite,
                       finite, st.booleans()), min_size=1, max_size=40),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=6),
)  # fmt: skip
def test_column_encoding_equals_json_dumps_record_by_record(
    rows: list[tuple[str, int, float, float, float, float, bool]], version: str
) -> None:
    """The columnar encoder (orjson's floats, one join) writes what json.dumps writes."""
    names, ts, price, forecast, lower, upper, naive = (list(c) for c in zip(*rows, strict=True))
    n = len(rows)
    ticks = TickColumns(np.arange(n), names, np.array(ts, np.int64), np.array(price),
                        np.full(n, np.nan), np.zeros(n, np.int32))  # fmt: skip
    none = np.zeros(n)
    batch = ForecastBatch(ticks, np.array(forecast), np.array(naive), version, none, none,
                          np.array(lower), np.array(upper), none, none)  # fmt: skip
    expected = [json.dumps(r, ensure_ascii=False).encode() for r in forecast_records(batch)]
    assert encode_forecast_lines(batch) == b"".join(line + b"\n" for line in expected)
    assert encode_forecasts(batch) == expected


def strict_json(line: bytes) -> Any:
    """The JSON object of ``line``, which must be UTF-8 and have no NaN or Infinity."""

    def no_constant(name: str) -> None:
        raise AssertionError(f"{name} in {line!r}")

    return json.loads(line.decode("utf-8"), parse_constant=no_constant)


def forecasts_of(series: list[str], forecast: list[float], version: str = "v1") -> ForecastBatch:
    n = len(series)
    ticks = TickColumns(
        position=np.arange(n),
        series=series,
        ts=np.arange(n, dtype=np.int64) * 10**9,
        price=np.full(n, 2.0),
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )
    naive = np.array([name.startswith("naive") for name in series])
    return forecast_batch(ticks, np.array(forecast), naive, version)


def test_unencodable_rows_are_the_ones_that_make_the_batch_raise() -> None:
    batch = forecasts_of(["A", "B", "\ud800", "C", "D"], [1.0, np.nan, 1.0, -np.inf, 1.0])
    with pytest.raises(ValueError):
        encode_forecast_lines(batch)
    failed = unencodable_rows(batch)
    assert [row for row, _ in failed] == [1, 2, 3]
    assert "forecast nan of series 'B' is not finite" in str(failed[0][1])
    assert isinstance(failed[1][1], UnicodeEncodeError)
    keep = np.array([0, 4])
    rest = batch.take(keep)
    lines = encode_forecast_lines(rest).splitlines()
    assert [strict_json(line)["series"] for line in lines] == ["A", "D"]


def test_a_model_version_that_is_not_unicode_text_fails_only_its_rows() -> None:
    batch = forecasts_of(["naive-A", "B", "naive-C"], [1.0, 1.0, 1.0], version="v\udc80")
    with pytest.raises(UnicodeEncodeError):
        encode_forecasts(batch)  # the fast path: finite numbers
    assert [row for row, _ in unencodable_rows(batch)] == [1]
    naive_only = forecasts_of(["naive-A"], [1.0], version="v\udc80")
    assert strict_json(encode_forecasts(naive_only)[0])["model_version"] == "naive"


def test_an_encodable_batch_has_no_unencodable_rows() -> None:
    assert unencodable_rows(forecasts_of(["A", "\u65e5\u7d4c225"], [1.0, 2.0])) == []


@pytest.mark.parametrize(
    ("raw", "limit", "kept"),
    [
        (b"abc", 3, b"abc"),
        (b"abc", 2, b"ab"),
        (b"abc", 0, b""),
        ("a\u00e9".encode(), 2, b"a"),  # a 2-byte character cut after its first byte
        ("a\u65e5".encode(), 3, b"a"),  # a 3-byte one, after its second
        ("a\U0001f600b".encode(), 4, b"a"),  # a 4-byte one, after its third
        ("a\U0001f600b".encode(), 5, "a\U0001f600".encode()),
        (b"\xff\xfe\xfd\xfc", 3, b"\xff\xfe\xfd"),  # not UTF-8: cut where the limit is
        (b"ab\xe6\x97", 3, b"ab"),  # UTF-8 up to the cut: the cut character goes
    ],
)
def test_kept_bytes_keep_whole_characters(raw: bytes, limit: int, kept: bytes) -> None:
    assert kept_bytes(raw, limit) == kept


def letter_of(raw: bytes, detail: str = "why", origin: dict[str, Any] | None = None) -> DeadLetter:
    rejected = Rejected(0, raw, RejectReason.MESSAGE_TOO_LARGE, detail)
    return DeadLetter(rejected, origin if origin is not None else {"offset": 7})


def test_a_dead_letter_keeps_its_first_bytes_and_says_how_many_there_were() -> None:
    long_text = ("x" * 9 + "\u00e9").encode() * 10
    record = strict_json(encode_dead_letter(letter_of(long_text), keep_bytes=10))
    assert (record["size"], record["truncated"], record["raw"]) == (110, True, "x" * 9)
    binary = bytes(range(255, -1, -1))
    record = strict_json(encode_dead_letter(letter_of(binary), keep_bytes=100))
    assert (record["size"], record["truncated"]) == (256, True)
    assert base64.b64decode(record["raw_base64"]) == binary[:100]
    whole = dead_letter_record(letter_of(b"{}"), keep_bytes=2)
    assert (whole["size"], whole["raw"], "truncated" in whole) == (2, "{}", False)


ANY_CHARACTER = st.characters(
    categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co", "Cn"]
)
ODD_VALUES = st.one_of(
    st.text(ANY_CHARACTER, max_size=10),
    st.floats(),
    st.integers(-(10**5000), 10**5000) | st.integers(),
    st.binary(max_size=8),
    st.none(),
    st.builds(object),
)


@given(
    st.binary(max_size=64),
    st.text(ANY_CHARACTER, max_size=30),
    st.dictionaries(st.text(ANY_CHARACTER, max_size=5), ODD_VALUES | st.lists(ODD_VALUES)),
    st.integers(0, 80),
)
def test_a_dead_letter_always_encodes_to_utf8_json(
    raw: bytes, detail: str, origin: dict[str, Any], keep: int
) -> None:
    record = strict_json(encode_dead_letter(letter_of(raw, detail, origin), keep_bytes=keep))
    assert record["reason"] == "message_too_large" and record["size"] == len(raw)
    kept = record["raw"].encode() if "raw" in record else base64.b64decode(record["raw_base64"])
    assert kept == raw[: len(kept)]
    assert kept == raw if len(raw) <= keep else keep - 3 <= len(kept) <= keep
    assert record.get("truncated", False) == (len(kept) < len(raw))
