"""Hostile input, generated: every bad message is one dead letter with its reason, the
pipeline never raises, and every valid tick interleaved with them gets its forecast.
Then anything at all a producer can send: each message is one forecast or one dead
letter, and every line written is UTF-8 JSON without NaN or Infinity.

The messages go through the real path: Kafka batches of records (as the consumer hands
them out) -> parse with input limits -> engine -> JSON-lines sink -> commit.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import MAX_EPOCH_MS, InputLimits, RejectReason
from forecaster.io.files import JsonLinesSink
from forecaster.io.records import format_rfc3339
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import Pipeline
from tests.support.messages import ListSource, Record
from tests.support.models import random_stepper

LIMITS = InputLimits(max_message_bytes=4096, max_price=1e9)
T0_MS = 1_767_225_600_000
SERIES = ("S0", "S1", "S2")


def message(**fields: Any) -> bytes:
    return json.dumps(fields, allow_nan=True).encode()


def json_literal(series: str, ts: int, price_literal: str) -> bytes:
    return f'{{"series": "{series}", "ts": {ts}, "price": {price_literal}}}'.encode()


def wrong_types() -> st.SearchStrategy[tuple[bytes, str]]:
    bad: st.SearchStrategy[Any] = st.one_of(
        st.booleans(), st.lists(st.integers(), max_size=2), st.just({})
    )
    return st.one_of(
        bad.map(lambda v: (message(series=v, ts=T0_MS, price=1.0), "series_type")),
        st.one_of(bad, st.floats(0.5, 9.5)).map(
            lambda v: (message(series="S0", ts=v, price=1.0), "ts_type")
        ),
        st.one_of(bad, st.text(max_size=5)).map(
            lambda v: (message(series="S0", ts=T0_MS, price=v), "price_type")
        ),
    )


def bad_messages() -> st.SearchStrategy[tuple[bytes, str]]:
    """A message that is not a valid tick, and the reason it must be rejected with."""
    fields = {"series": "S1", "ts": T0_MS, "price": 2.0}
    return st.one_of(
        st.text(max_size=20).map(lambda t: (("{" + t + "]").encode(), "invalid_json")),
        st.binary(max_size=20).map(lambda b: (b"\xff" + b, "not_utf8")),
        st.sampled_from(["series", "ts", "price"]).map(
            lambda k: (message(**{n: v for n, v in fields.items() if n != k}), f"missing_{k}")
        ),
        wrong_types(),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]).map(
            lambda p: (json_literal("S2", T0_MS, p), "price_not_finite")
        ),
        st.floats(-1e6, 0.0).map(
            lambda p: (message(series="S2", ts=T0_MS, price=p), "price_not_positive")
        ),
        st.floats(1.01e9, 1e300).map(
            lambda p: (message(series="S2", ts=T0_MS, price=p), "price_out_of_range")
        ),
        st.sampled_from(["yesterday", "2026-13-45T00:00:00Z", "2026-01-05T10:00:00", ""]).map(
            lambda t: (
                message(series="S0", ts=t, price=1.0),
                "ts_no_timezone" if t.endswith(":00") else "ts_format",
            )
        ),
        st.integers(5000, 9000).map(
            lambda n: (message(series="S0", ts=T0_MS, price=1.0, pad="x" * n), "message_too_large")
        ),
        st.text(st.characters(codec="utf-8"), min_size=201, max_size=260).map(
            lambda s: (message(series=s, ts=T0_MS, price=1.0), "series_length")
        ),
    )


@dataclass
class Stream:
    """Messages in order; the reason each bad one must get; the (series, ts) of valid ones."""

    payloads: list[bytes] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    valid: set[tuple[str, str]] = field(default_factory=set)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    stream, last_ts = Stream(), dict[str, int]()
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["valid", "valid", "bad", "duplicate", "out_of_order"]))
        series = draw(st.sampled_from(SERIES))
        if kind == "bad":
            payload, reason = draw(bad_messages())
        elif kind != "valid" and series in last_ts:
            before = 0 if kind == "duplicate" else draw(st.integers(1, 5000))
            payload = message(series=series, ts=last_ts[series] - before, price=3.0)
            reason = "ts_duplicate" if kind == "duplicate" else "ts_out_of_order"
        else:
            ts = last_ts.get(series, T0_MS) + draw(st.integers(1, 60_000))
            last_ts[series], reason = ts, ""
            payload = message(series=series, ts=ts, price=draw(st.floats(0.01, 1e6)))
            stream.valid.add((series, format_rfc3339(np.array([ts * 1_000_000]))[0]))
        if reason:
            stream.reasons[len(stream.payloads)] = reason
        stream.payloads.append(payload)
    return stream


# One message of every kind of bad, whatever hypothesis happens to draw.
EVERY_BAD_KIND = [
    (b"{]", "invalid_json"),
    (b"\xff{}", "not_utf8"),
    (message(ts=T0_MS, price=2.0), "missing_series"),
    (message(series="S1", price=2.0), "missing_ts"),
    (message(series="S1", ts=T0_MS), "missing_price"),
    (message(series=True, ts=T0_MS, price=1.0), "series_type"),
    (message(series="S0", ts=1.5, price=1.0), "ts_type"),
    (message(series="S0", ts=T0_MS, price="1.0"), "price_type"),
    (json_literal("S2", T0_MS, "NaN"), "price_not_finite"),
    (message(series="S2", ts=T0_MS, price=0.0), "price_not_positive"),
    (message(series="S2", ts=T0_MS, price=1e12), "price_out_of_range"),
    (message(series="S0", ts="yesterday", price=1.0), "ts_format"),
    (message(series="S0", ts="2026-01-05T10:00:00", price=1.0), "ts_no_timezone"),
    (message(series="S0", ts=T0_MS, price=1.0, pad="x" * 5000), "message_too_large"),
    (message(series="S" * 201, ts=T0_MS, price=1.0), "series_length"),
]


def every_bad_kind_between_valid_ticks() -> Stream:
    stream = Stream()
    for i, (payload, reason) in enumerate(EVERY_BAD_KIND):
        ts = T0_MS + 1000 * (i + 1)
        stream.payloads.append(message(series="S0", ts=ts, price=1.0 + i))
        stream.valid.add(("S0", format_rfc3339(np.array([ts * 1_000_000]))[0]))
        stream.reasons[len(stream.payloads)] = reason
        stream.payloads.append(payload)
    last = T0_MS + 1000 * len(EVERY_BAD_KIND)
    for ts, reason in ((last, "ts_duplicate"), (last - 1, "ts_out_of_order")):
        stream.reasons[len(stream.payloads)] = reason
        stream.payloads.append(message(series="S0", ts=ts, price=3.0))
    return stream


def test_every_kind_of_bad_message_is_a_dead_letter_with_its_reason() -> None:
    check_stream(every_bad_kind_between_valid_ticks(), batch_size=4)


@settings(max_examples=60)
@given(streams(), st.integers(1, 9))
def test_bad_messages_are_dead_letters_and_valid_ticks_forecasts(
    stream: Stream, batch_size: int
) -> None:
    check_stream(stream, batch_size)


def run_pipeline(
    payloads: list[bytes], batch_size: int, limits: InputLimits = LIMITS
) -> tuple[bytes, bytes]:
    """The forecast lines and the dead-letter lines of the messages, through the pipeline."""
    records = [Record("ticks", 0, i, None, p, []) for i, p in enumerate(payloads)]
    model = random_stepper(ModelSpec(cell="lstm", layers=1, units=4))
    engine = Engine(EngineParams(features=FeatureParams(min_history=2), ring_length=4), model)
    forecasts, letters = io.BytesIO(), io.BytesIO()
    sink = JsonLinesSink(forecasts, letters, keep_bytes=limits.max_message_bytes)
    pipeline = Pipeline(ListSource(records, batch_size, limits), engine, sink, Metrics())
    while pipeline.step():
        pass
    return forecasts.getvalue(), letters.getvalue()


def check_stream(stream: Stream, batch_size: int) -> None:
    """Through the pipeline: one dead letter per bad message, one forecast per valid tick."""
    forecasts, letters = run_pipeline(stream.payloads, batch_size)
    dead = [json.loads(line) for line in letters.splitlines()]
    assert {d["source"]["offset"]: d["reason"] for d in dead} == stream.reasons
    assert len(dead) == len(stream.reasons)
    made = [json.loads(line) for line in forecasts.splitlines()]
    assert sorted((f["series"], f["ts"]) for f in made) == sorted(stream.valid)


# --- anything at all ---------------------------------------------------------------------

# Small enough that sizes around it are cheap, large enough to hold an integer past
# Python's 4,300-digit limit for int(); the tick format's own latest ts, not the setting's
# (2200), so that a tick of 2223 is in the future; a skew so that far-future ticks are
# checked too.
HOSTILE_LIMITS = InputLimits(
    max_message_bytes=4400,
    max_price=1e9,
    max_ts_ns=MAX_EPOCH_MS * 1_000_000,
    max_future_skew_ns=300 * 10**9,
)
REASONS = {reason.value for reason in RejectReason}
EVERY_CHARACTER = st.characters(
    categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co", "Cn"]
)


def json_string(text: str, escaped: bool) -> bytes:
    r"""``text`` as a JSON string: every character past ASCII as a ``\uXXXX`` escape (a lone
    surrogate too), or as it is, where a lone surrogate makes bytes that are not UTF-8."""
    if escaped:
        return json.dumps(text).encode()
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")


def any_strings() -> st.SearchStrategy[bytes]:
    return st.builds(json_string, st.text(EVERY_CHARACTER, max_size=12), st.booleans())


def big_integer(digits: int, digit: str, negative: bool) -> bytes:
    return ("-" if negative else "").encode() + digit.encode() * digits


def numbers() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.floats().map(lambda f: json.dumps(f).encode()),  # NaN and Infinity too
        st.integers().map(lambda i: str(i).encode()),
        st.builds(
            big_integer,
            st.sampled_from([19, 20, 310, 4300, 4301, 4350]),  # past int64, float, int()
            st.sampled_from("159"),
            st.booleans(),
        ),
        st.sampled_from([b"1e400", b"-1e400", b"-0.0", b"5e-324", b"0", b"1E-10"]),
    )


def rfc3339(fields: tuple[int, ...], fraction: str, zone: str, t: str) -> bytes:
    year, month, day, hour, minute, second = fields
    stamp = f"{year:04}-{month:02}-{day:02}{t}{hour:02}:{minute:02}:{second:02}"
    return json.dumps(stamp + (f".{fraction}" if fraction else "") + zone).encode()


def timestamps() -> st.SearchStrategy[bytes]:
    """Times at and past every edge (years, field values, leap seconds, zones, digits of
    a fraction), and epoch ms of any size, the future's too."""
    years = st.integers(0, 9999) | st.integers(1960, 2300) | st.sampled_from([1677, 2262])
    fields = st.tuples(
        years, *(st.integers(0, top) for top in (13, 32, 24, 60, 60))
    )  # month, day, hour, minute, second
    zones = st.sampled_from(["Z", "z", "", "+00:00", "-23:59", "+24:00", "+99:99", "+05:30"])
    fractions = st.text("0123456789", max_size=10)
    epoch_ms = st.integers(0, MAX_EPOCH_MS + 1) | st.integers(1_800_000_000_000, MAX_EPOCH_MS)
    return st.one_of(
        st.builds(rfc3339, fields, fractions, zones, st.sampled_from("Tt ")),
        epoch_ms.map(lambda i: str(i).encode()),
        st.just(str(T0_MS).encode()),  # the first tick's time, again
        numbers(),
    )


def json_scalars() -> st.SearchStrategy[bytes]:
    return st.one_of(any_strings(), numbers(), st.sampled_from([b"true", b"false", b"null"]))


def nested(depth: int, bracket: str, inner: bytes) -> bytes:
    opening, closing = (b"[", b"]") if bracket == "[" else (b'{"a": ', b"}")
    return opening * depth + inner + closing * depth


def json_values() -> st.SearchStrategy[bytes]:
    """Any JSON value; nested past the parser's recursion limit too."""
    return st.one_of(
        st.recursive(
            json_scalars(),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3).map(lambda items: b"[" + b", ".join(items) + b"]"),
                st.lists(st.tuples(any_strings(), inner), max_size=3).map(json_object),
            ),
            max_leaves=4,
        ),
        st.builds(nested, st.integers(1, 2100), st.sampled_from("[{"), json_scalars()),
    )


def json_object(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """An object of raw keys and values: a key need not be a string, nor unique."""
    return b"{" + b", ".join(key + b": " + value for key, value in pairs) + b"}"


def field_values(name: str) -> st.SearchStrategy[bytes]:
    """What might come in a field: what its rules are about, or anything at all."""
    long_texts = st.text(EVERY_CHARACTER, min_size=199, max_size=201)
    near = {
        "series": any_strings() | st.builds(json_string, long_texts, st.booleans()),
        "ts": timestamps(),
        "price": numbers(),
        "volume": numbers() | any_strings(),
    }[name]
    return st.one_of(near, near, json_values())


def one_in(draw: st.DrawFn, n: int) -> bool:
    return draw(st.integers(0, n - 1)) == 0


@st.composite
def any_message(draw: st.DrawFn, index: int) -> bytes:
    """A tick of which one field may hold anything, any field may be missing, with unknown
    and repeated fields, now and then padded to around the size limit; or any JSON value,
    or any bytes. About half of them are valid ticks."""
    if one_in(draw, 4):
        return draw(json_values() | st.binary(max_size=40))
    ts_ms = T0_MS + 1000 * index
    usual = {
        "series": json_string(draw(st.sampled_from(SERIES)), escaped=False),
        "ts": draw(st.sampled_from([str(ts_ms).encode(), json.dumps(iso(ts_ms)).encode()])),
        "price": repr(draw(st.floats(0.01, 1e6))).encode(),
        "volume": b"5",
    }
    hostile = draw(st.sampled_from(list(usual))) if one_in(draw, 2) else None
    pairs = [
        (json.dumps(name).encode(), draw(field_values(name)) if name == hostile else value)
        for name, value in usual.items()
        if not one_in(draw, 25)
    ]
    if one_in(draw, 3):  # unknown fields; a key need not be a string
        fields = st.tuples(any_strings() | json_scalars(), json_scalars() | json_values())
        pairs += draw(st.lists(fields, min_size=1, max_size=2))
    if one_in(draw, 10):
        pairs.insert(draw(st.integers(0, len(pairs))), (b'"series"', draw(field_values("series"))))
    return padded(json_object(pairs), draw(st.integers(-4, 4)) if one_in(draw, 8) else None)


def iso(ts_ms: int) -> str:
    return format_rfc3339(np.array([ts_ms * 1_000_000]))[0]


def padded(message: bytes, off_limit: int | None) -> bytes:
    """``message`` with a field that makes it ``off_limit`` bytes from the size limit."""
    field = b', "pad": ""}'
    room = HOSTILE_LIMITS.max_message_bytes + (off_limit or 0) - len(message) - len(field) + 1
    if off_limit is None or room < 0 or not message.endswith(b"}") or message == b"{}":
        return message
    return message[:-1] + b', "pad": "' + b"x" * room + b'"}'


@st.composite
def any_messages(draw: st.DrawFn) -> list[bytes]:
    return [draw(any_message(i)) for i in range(draw(st.integers(1, 8)))]


def tick_text(
    n: int,
    series: bytes = b'"S0"',
    ts: bytes | None = None,
    price: bytes = b"1.5",
    rest: bytes = b"",
) -> bytes:
    """The ``n``-th tick, of raw JSON fields; its time is n seconds after T0 unless given."""
    ts = str(T0_MS + 1000 * n).encode() if ts is None else ts
    return b'{"series": %s, "ts": %s, "price": %s%s}' % (series, ts, price, rest)


# Every kind of hostile message, whatever hypothesis happens to draw, with its fate: a
# dead letter's reason, or None for a forecast.
EVERY_HOSTILE_KIND: list[tuple[bytes, str | None]] = [
    (tick_text(0), None),
    (tick_text(1, series=b'"\\ud800"'), "series_invalid"),  # a lone surrogate, escaped
    (tick_text(2, series=b'"\xed\xa0\x80"'), "not_utf8"),  # and as it is: not UTF-8
    (tick_text(3, series=b'"S0\\u0000"'), "series_invalid"),
    (tick_text(4, series=b'"S0\\u2028"'), "series_invalid"),
    (tick_text(5, series=b'" S0"'), "series_invalid"),
    (tick_text(6, series=b'"' + b"S" * 201 + b'"'), "series_length"),
    (tick_text(7, series=b"1.5"), "series_type"),
    (tick_text(8, ts=b"true"), "ts_type"),
    (tick_text(9, ts=b'"2026-01-01T00:00:00"'), "ts_no_timezone"),
    (tick_text(10, ts=b'"5000-01-01T00:00:00Z"'), "ts_out_of_range"),
    (tick_text(11, ts=b'"2016-12-31T23:59:60Z"'), "ts_format"),
    (tick_text(12, ts=b'"2026-01-01T00:00:00+99:99"'), "ts_format"),
    (tick_text(13, ts=b"8000000000000"), "ts_in_future"),  # in 2223: in the future
    (tick_text(14, ts=b"1" * 40), "ts_out_of_range"),  # past int64
    (tick_text(15, price=b"9" * 4301), "invalid_json"),  # past the digits int() reads
    (tick_text(16, price=b"1e400"), "price_not_finite"),
    (tick_text(17, price=b"-0.0"), "price_not_positive"),
    (tick_text(18, price=b'"1.5"'), "price_type"),
    (tick_text(19, rest=b', "volume": "\\udfff"'), "volume_type"),
    (tick_text(20, rest=b', "volume": 1e308'), None),
    (tick_text(21, rest=b', "\\ud800": ' + nested(1500, "[", b"1")), "invalid_json"),
    (tick_text(22, rest=b', "series": "S1"'), None),
    (b"\xef\xbb\xbf" + tick_text(23), "invalid_json"),
    (tick_text(24) + b"\x00", "invalid_json"),
    (b"\x00\xff", "not_utf8"),
    (padded(tick_text(26), 0), None),
    (padded(tick_text(27), 1), "message_too_large"),
    (tick_text(28, ts=str(T0_MS + 26_000).encode()), "ts_duplicate"),  # 26's time again
    (tick_text(29, ts=str(T0_MS + 500).encode()), "ts_out_of_order"),
]


def test_every_kind_of_hostile_message_meets_its_fate() -> None:
    payloads = [payload for payload, _ in EVERY_HOSTILE_KIND]
    forecasts, letters = run_pipeline(payloads, 4, HOSTILE_LIMITS)
    dead = {d["source"]["offset"]: d["reason"] for d in map(strict_json, letters.splitlines())}
    assert [dead.get(i) for i in range(len(payloads))] == [fate for _, fate in EVERY_HOSTILE_KIND]
    assert len(forecasts.splitlines()) == len(payloads) - len(dead)


@settings(max_examples=200)
@given(any_messages(), st.integers(1, 5))
@example([payload for payload, _ in EVERY_HOSTILE_KIND], 4)
def test_any_message_is_one_forecast_or_one_dead_letter_in_utf8_json(
    payloads: list[bytes], batch_size: int
) -> None:
    forecasts, letters = run_pipeline(payloads, batch_size, HOSTILE_LIMITS)
    made = [strict_json(line) for line in forecasts.splitlines()]
    dead = {}
    for line in letters.splitlines():
        letter = strict_json(line)
        assert letter["reason"] in REASONS and letter["source"]["offset"] not in dead
        dead[letter["source"]["offset"]] = letter
        event(f"dead letter: {letter['reason']}")
    event(f"forecasts: {['none', 'one', 'several'][min(len(made), 2)]}")
    assert set(dead) <= set(range(len(payloads)))
    accepted = [json.loads(p)["series"] for i, p in enumerate(payloads) if i not in dead]
    assert Counter(f["series"] for f in made) == Counter(accepted)
    assert all(0 < f["lower"] <= f["forecast"] <= f["upper"] for f in made)
    for offset, letter in dead.items():
        kept = letter["raw"].encode() if "raw" in letter else base64.b64decode(letter["raw_base64"])
        assert letter["size"] == len(payloads[offset]) and payloads[offset].startswith(kept)


def strict_json(line: bytes) -> Any:
    """The JSON of ``line``, which must be UTF-8 and have no NaN or Infinity."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in {line!r}")

    return json.loads(line.decode("utf-8"), parse_constant=refuse)


def test_the_padding_lands_around_the_limit() -> None:
    message = json_object([(b'"series"', b'"S0"')])
    sizes = [len(padded(message, off)) - HOSTILE_LIMITS.max_message_bytes for off in (-4, 0, 4)]
    assert sizes == [-4, 0, 4] and padded(message, None) == message
