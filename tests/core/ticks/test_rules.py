import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.core.ticks import rules
from forecaster.core.ticks.format import InputLimits, RejectReason
from forecaster.core.ticks.json_messages import parse_messages
from tests.support.ticks import tick


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


NOW_NS = 1_767_571_200_000_000_000
SKEW = InputLimits(max_future_skew_ns=60 * 10**9)


@pytest.mark.parametrize(
    ("ts_ms", "limits", "now_ns", "reason"),
    [
        (NOW_NS // 10**6 + 60_000, SKEW, NOW_NS, None),
        (NOW_NS // 10**6 + 60_001, SKEW, NOW_NS, RejectReason.TS_IN_FUTURE),
        (NOW_NS // 10**6 + 60_001, SKEW, None, None),
        (NOW_NS // 10**6 + 10**9, InputLimits(max_future_skew_ns=0), NOW_NS, None),
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


STAMP_CHARS = "0123456789-T:.Zz +x"


@st.composite
def utc_stamps(draw: st.DrawFn) -> str:
    """A timestamp in the form the service writes, its fields in range or just out of it
    (a 30th of February, hour 24, 1969, 2256), sometimes with a character changed."""
    fields = [draw(st.integers(low, high)) for low, high in
              ((1965, 2260), (0, 13), (0, 32), (0, 25), (0, 61), (0, 61), (0, 999))]  # fmt: skip
    text = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z".format(*fields)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(STAMP_CHARS)) + text[at + 1 :]
    return text


@settings(max_examples=500, deadline=None)
@given(st.lists(utc_stamps(), min_size=1, max_size=3))
def test_stamps_read_in_one_pass_read_as_rule_by_rule(stamps: list[str]) -> None:
    payloads = [json.dumps({"series": "A", "ts": ts, "price": 1.5}).encode() for ts in stamps]
    fast = parse_messages(payloads)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules, "utc_milliseconds_ns", lambda texts: None)
        slow = parse_messages(payloads)
    assert fast.ticks.ts.tolist() == slow.ticks.ts.tolist()
    assert [(r.position, r.reason, r.detail) for r in fast.rejects] == [
        (r.position, r.reason, r.detail) for r in slow.rejects
    ]
