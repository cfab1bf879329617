"""Ticks from JSON messages, one per payload (live input): a message that is too large,
not UTF-8, not JSON or not an object is rejected before its fields are read.

A message is decoded by orjson (in C, ~6x faster than the standard library) and, where
orjson's answer could differ from the standard library's (see ``_decoded``), by
``json.loads``: every message gets exactly the fields, rejects and details it would get
from ``json.loads`` alone (tests/core/ticks/test_json_messages.py proves it on generated
messages).

>>> batch = parse_messages([b'{"series": "A", "ts": 1, "price": 2}', b'[1, 2]'])
>>> batch.ticks.series, [(r.position, r.reason.value) for r in batch.rejects]
(['A'], [(1, 'not_an_object')])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import orjson

from forecaster.core.ticks.columns import ParsedBatch
from forecaster.core.ticks.format import DEFAULT_LIMITS, InputLimits, RejectReason
from forecaster.core.ticks.isolation import isolated
from forecaster.core.ticks.rules import Rows, finish

# A tick is one flat object. Deeper JSON is refused before it is decoded: how deep the
# decoder itself gets depends on the interpreter's recursion limit, which TensorFlow
# raises, so without this bound one message's fate would depend on what was imported.
MAX_JSON_DEPTH = 64
FAILED = object()  # what a message that is no JSON of ours decodes to


def parse_messages(
    payloads: Sequence[bytes], limits: InputLimits = DEFAULT_LIMITS, now_ns: int | None = None
) -> ParsedBatch:
    """Parse JSON tick messages (one per payload); ``now_ns``, the wall clock in epoch
    nanoseconds, checks ``limits.max_future_skew_ns``.

    >>> limits = InputLimits(max_future_skew_ns=60 * 10**9)
    >>> batch = parse_messages([b'{"series": "A", "ts": 120001, "price": 1}'], limits, 0)
    >>> batch.rejects[0].reason.value, batch.rejects[0].detail
    ('ts_in_future', 'ts 120001 is 120.001 s ahead of the clock (at most 60 s allowed)')
    """

    def raw_of(position: int) -> bytes:
        return bytes(payloads[position])

    def parse(first: int, end: int) -> ParsedBatch:
        rows = Rows(end - first)
        for i, payload in enumerate(payloads[first:end]):
            if len(payload) <= limits.max_message_bytes:
                _extract_json(rows, i, payload)
            else:
                detail = f"message of {len(payload)} bytes > {limits.max_message_bytes}"
                rows.fail(i, RejectReason.MESSAGE_TOO_LARGE, detail)
        return finish(rows, limits, raw_of, first, now_ns)

    return isolated(parse, len(payloads), raw_of)


def _decoded(rows: Rows, i: int, payload: bytes, obj: Any) -> Any:
    """The message's JSON value as ``json.loads`` has it, or FAILED once row ``i`` failed;
    ``obj`` is orjson's answer (FAILED if orjson refused the message).

    orjson's answer is taken for an object of no more than MAX_JSON_DEPTH brackets whose
    series and ts are no floats. Everything else goes to ``json.loads``, whose answer
    differs: NaN and Infinity, lone surrogates, numbers past a double (orjson refuses
    them) and integers past 64 bits (orjson makes them floats: a float series or ts would
    change a reject's reason or detail; a price's value is the same double either way).
    """
    if (
        type(obj) is not dict
        or type(obj.get("ts")) is float
        or type(obj.get("series")) is float
        or payload.count(b"[") + payload.count(b"{") > MAX_JSON_DEPTH
    ):
        return _decoded_exactly(rows, i, payload)
    return obj


def _decoded_exactly(rows: Rows, i: int, payload: bytes) -> Any:
    """``_decoded`` by the standard library alone (the reference orjson is held to)."""
    try:
        text = bytes(payload).decode("utf-8")
        brackets = text.count("[") + text.count("{")  # a cheap bound of the depth first
        if brackets > MAX_JSON_DEPTH and _json_depth(text) > MAX_JSON_DEPTH:
            rows.fail(i, RejectReason.INVALID_JSON,
                      f"message nests deeper than {MAX_JSON_DEPTH} levels")  # fmt: skip
            return
        return json.loads(text)
    except UnicodeDecodeError as exc:
        rows.fail(i, RejectReason.NOT_UTF8, f"message is not UTF-8: {exc.reason}")
    except (ValueError, RecursionError) as exc:
        rows.fail(i, RejectReason.INVALID_JSON, f"message is not JSON: {exc}")
    return FAILED


def _orjson_value(payload: bytes) -> Any:
    """orjson's answer for a message (FAILED if it refuses it), for ``_decoded`` to check."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return FAILED


def _extract_json(rows: Rows, i: int, payload: bytes) -> None:
    obj = _orjson_value(payload)
    if type(obj) is dict and _took_usual_tick(rows, i, obj):
        return
    obj = _decoded(rows, i, payload, obj)
    if obj is FAILED:
        return
    if not isinstance(obj, dict):
        rows.fail(i, RejectReason.NOT_AN_OBJECT, f"message is a JSON {type(obj).__name__}")
        return
    for key, missing in (
        ("series", RejectReason.MISSING_SERIES),
        ("ts", RejectReason.MISSING_TS),
        ("price", RejectReason.MISSING_PRICE),
    ):
        if key not in obj or obj[key] is None:
            rows.fail(i, missing, f"field {key!r} is missing")
    series, ts, price, volume = (
        obj.get("series"),
        obj.get("ts"),
        obj.get("price"),
        obj.get("volume"),
    )
    if isinstance(series, str):
        rows.series[i] = series
    elif series is not None:
        rows.fail(i, RejectReason.SERIES_TYPE, f"series must be a string, not {_kind(series)}")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | str)):
        rows.fail(i, RejectReason.TS_TYPE, f"ts must be a string or integer, not {_kind(ts)}")
    rows.ts[i] = ts
    rows.price[i] = _json_number(rows, i, price, "price", RejectReason.PRICE_TYPE)
    if volume is not None:
        rows.volume[i] = _json_number(rows, i, volume, "volume", RejectReason.VOLUME_TYPE)
        if math.isnan(rows.volume[i]):
            rows.fail(i, RejectReason.VOLUME_INVALID, "volume is NaN")


def _took_usual_tick(rows: Rows, i: int, obj: dict[str, Any]) -> bool:
    """Fill row ``i`` from orjson's object at once if it is the usual tick: a string series,
    a string or integer ts, a float price (orjson's are finite and exact), no volume or a
    float one, and no other field (so nothing nested); else leave it to the full path."""
    if len(obj) - ("volume" in obj) != 3:
        return False
    series, ts, price, volume = obj.get("series"), obj.get("ts"), obj.get("price"), obj.get(
        "volume")  # fmt: skip
    if (
        type(series) is not str
        or (type(ts) is not str and type(ts) is not int)
        or type(price) is not float
        or (volume is not None and type(volume) is not float)
    ):
        return False
    rows.series[i], rows.ts[i], rows.price[i] = series, ts, price
    if volume is not None:
        rows.volume[i] = volume
    return True


def _json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings do not count).

    >>> _json_depth('{"a": [1, {"b": "[[["}]}'), _json_depth("[" * 100)
    (3, 100)
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _json_number(rows: Rows, i: int, value: Any, name: str, wrong_type: RejectReason) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        rows.fail(i, wrong_type, f"{name} must be a number, not {_kind(value)}")
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _kind(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__
    )
