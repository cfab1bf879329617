r"""The tick format: parse raw messages or CSV rows into columns, or reject them with a reason.

A tick is a JSON object ``{"series": str, "ts": str | int, "price": number}`` with an
optional ``"volume"``; unknown fields are ignored (of a key given twice, the last value
counts, as in most JSON parsers). ``ts`` is an RFC 3339 timestamp with a zone, or epoch
milliseconds. Parsing never raises on bad input: every message either becomes a row of
:class:`TickColumns` or a :class:`Rejected` naming the rule it broke, and a message that
makes the parser itself raise is rejected alone (internal_error), the others parsed.

A series id is 1-``max_series_chars`` Unicode characters that can be printed and sent:
no control characters (category Cc), surrogates (Cs: from a JSON ``\uD800`` escape, or
a CSV byte that is not UTF-8), line or paragraph separators (Zl, Zp), invisible format
characters (Cf; but ZWNJ and ZWJ, U+200C and U+200D, which some scripts and emoji need)
or noncharacters, and no whitespace at either end; else it is rejected (series_invalid).
Any other character is fine: "EUR/USD", "日経225", "BRK.B" are ids. A detail never
quotes the message's text unescaped: it names code points, or shows ``repr``.

Live input is checked against the wall clock: with ``max_future_skew_ns`` set and the
``now_ns`` of :func:`parse_messages` given, a tick further ahead is rejected
(ts_in_future). CSV replays run on the data's own clock and have no such check.

>>> batch = parse_messages([b'{"series": "AAPL", "ts": 1700000000000, "price": 189.5}',
...                         b'{"series": "AAPL", "price": -1}',
...                         b'{"series": "AAPL\\u0000", "ts": 1700000000000, "price": 1}'])
>>> batch.ticks.series, batch.ticks.price.tolist()
(['AAPL'], [189.5])
>>> for reject in batch.rejects:
...     print(reject.position, reject.reason.value, reject.detail)
1 missing_ts field 'ts' is missing
2 series_invalid series has a control character (U+0000) at index 4
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecaster.faults import internal_error_detail, log_internal_error

log = logging.getLogger(__name__)

MAX_SERIES_CHARS = 200
# A tick is one flat object. Deeper JSON is refused before it is decoded: how deep the
# decoder itself gets depends on the interpreter's recursion limit, which TensorFlow
# raises, so without this bound one message's fate would depend on what was imported.
MAX_JSON_DEPTH = 64
MAX_EPOCH_MS = 9_000_000_000_000  # 2255-03-14; beyond it nanoseconds overflow int64
CSV_COLUMNS = ("series", "ts", "price", "volume")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# ASCII digits only: pandas reads no others in a timestamp (int() does, in epoch ms).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_RFC3339_NO_ZONE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
)
# Beyond these years int64 nanoseconds may not hold a time: pandas gives NaT or a coarser unit.
_FIRST_NS_YEAR, _LAST_NS_YEAR = 1678, 2261
_EPOCH_MS = re.compile(r"[+-]?\d{1,19}")
_PLAIN_DIGITS = 18  # the most decimal digits that always fit in an int64
_POWERS_OF_TEN = 10 ** np.arange(_PLAIN_DIGITS + 1, dtype=np.int64)


class RejectReason(StrEnum):
    """The rule a rejected tick broke; the value is what dead letters carry."""

    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_SERIES = "missing_series"
    MISSING_TS = "missing_ts"
    MISSING_PRICE = "missing_price"
    SERIES_TYPE = "series_type"
    SERIES_LENGTH = "series_length"
    TS_TYPE = "ts_type"
    TS_FORMAT = "ts_format"
    TS_NO_TIMEZONE = "ts_no_timezone"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    PRICE_TYPE = "price_type"
    PRICE_NOT_FINITE = "price_not_finite"
    PRICE_NOT_POSITIVE = "price_not_positive"
    VOLUME_TYPE = "volume_type"
    VOLUME_INVALID = "volume_invalid"
    TS_DUPLICATE = "ts_duplicate"
    TS_OUT_OF_ORDER = "ts_out_of_order"
    MESSAGE_TOO_LARGE = "message_too_large"
    PRICE_OUT_OF_RANGE = "price_out_of_range"
    SERIES_INVALID = "series_invalid"
    TS_IN_FUTURE = "ts_in_future"
    SERIES_LIMIT = "series_limit"
    KEY_MISMATCH = "key_mismatch"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class InputLimits:
    """Sanity bounds of a tick, beyond its format; a tick outside them is a dead letter.

    >>> limits = InputLimits(max_price=1000.0)
    >>> parse_messages([b'{"series":"X","ts":1,"price":5000}'], limits).rejects[0].reason.value
    'price_out_of_range'
    """

    max_message_bytes: int = 16384  # a message longer than this is not even decoded
    max_series_chars: int = MAX_SERIES_CHARS
    min_price: float = 1e-9
    max_price: float = 1e12
    min_ts_ns: int = 0
    max_ts_ns: int = MAX_EPOCH_MS * 1_000_000
    # Live input only: a tick this far ahead of the wall clock (``now_ns`` at parse) is
    # rejected as ts_in_future; 0 = no check.
    max_future_skew_ns: int = 0

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1 or self.max_series_chars < 1:
            raise ValueError("max_message_bytes and max_series_chars must be >= 1")
        if not 0 < self.min_price < self.max_price:
            raise ValueError(f"need 0 < min_price < max_price, got {self.min_price}, "
                             f"{self.max_price}")  # fmt: skip
        if not 0 <= self.min_ts_ns < self.max_ts_ns <= MAX_EPOCH_MS * 1_000_000:
            raise ValueError("need 1970 <= min_ts < max_ts <= 2255-03-14")
        if self.max_future_skew_ns < 0:
            raise ValueError(f"max_future_skew_ns must be >= 0, got {self.max_future_skew_ns}")


DEFAULT_LIMITS = InputLimits()


def rfc3339_ns(text: str) -> int:
    """Epoch nanoseconds of an RFC 3339 timestamp with a zone; ValueError if it is not one.

    >>> rfc3339_ns("1970-01-01T00:00:01Z")
    1000000000
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp with a zone")
    try:
        return int(pd.Timestamp(text.upper()).value)
    except OverflowError:
        raise ValueError(f"{text!r} is out of the range of int64 nanoseconds") from None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that is not a valid tick: where it was, what it was, and why."""

    position: int
    raw: bytes
    reason: RejectReason
    detail: str


@dataclass(slots=True)
class TickColumns:
    """Valid ticks of one batch as columns; ``position`` indexes the source batch."""

    position: IntArray
    series: list[str]
    ts: IntArray  # epoch nanoseconds, UTC
    price: FloatArray
    volume: FloatArray  # NaN where absent
    partition: npt.NDArray[np.int32]  # source partition (0 for files)

    def __len__(self) -> int:
        return len(self.series)

    def take(self, index: npt.NDArray[np.intp]) -> TickColumns:
        """The rows at ``index``, in that order."""
        return TickColumns(
            position=self.position[index],
            series=_pick(self.series, index),
            ts=self.ts[index],
            price=self.price[index],
            volume=self.volume[index],
            partition=self.partition[index],
        )


@dataclass(slots=True)
class ParsedBatch:
    """One source batch after parsing: valid ticks, rejects, and a way back to the raw bytes."""

    ticks: TickColumns
    rejects: list[Rejected]
    received: int
    raw_of: Callable[[int], bytes] = field(repr=False)


def empty_columns() -> TickColumns:
    return TickColumns(
        position=np.empty(0, np.int64),
        series=[],
        ts=np.empty(0, np.int64),
        price=np.empty(0, np.float64),
        volume=np.empty(0, np.float64),
        partition=np.empty(0, np.int32),
    )


def _pick(values: list[Any], index: npt.NDArray[np.intp]) -> list[Any]:
    return list(map(values.__getitem__, index.tolist()))


class _Rows:
    """Per-row raw fields plus the first failure of each row, filled in rule by rule."""

    def __init__(self, size: int) -> None:
        self.series: list[Any] = [None] * size
        self.ts: list[Any] = [None] * size
        # Epoch ms of each ts already known to be a plain digit string; -1: check it row by row.
        self.plain_ts_ms = np.full(size, -1, np.int64)
        self.price = np.full(size, np.nan)
        self.volume = np.full(size, np.nan)
        self.reason: list[RejectReason | None] = [None] * size
        self.detail: list[str] = [""] * size
        self.failed = np.zeros(size, bool)

    def fail(self, row: int, reason: RejectReason, detail: str) -> None:
        if self.reason[row] is None:
            self.reason[row] = reason
            self.detail[row] = detail
            self.failed[row] = True

    def fail_each(self, rows: Iterable[int], reason: RejectReason, detail: str) -> None:
        for row in rows:
            self.fail(row, reason, detail)

    def ok(self) -> BoolArray:
        return ~self.failed


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
        rows = _Rows(end - first)
        for i, payload in enumerate(payloads[first:end]):
            if len(payload) <= limits.max_message_bytes:
                _extract_json(rows, i, payload)
            else:
                detail = f"message of {len(payload)} bytes > {limits.max_message_bytes}"
                rows.fail(i, RejectReason.MESSAGE_TOO_LARGE, detail)
        return _finish(rows, limits, raw_of, first, now_ns)

    return _isolated(parse, len(payloads), raw_of)


def parse_csv_frame(
    frame: pd.DataFrame, first_position: int = 0, limits: InputLimits = DEFAULT_LIMITS
) -> ParsedBatch:
    """Parse rows of a tick CSV read with ``dtype=str, keep_default_na=False`` (and
    ``encoding_errors="surrogateescape"``, so that a row that is not UTF-8 is a reject).

    ``first_position`` is the row number of the frame's first row in its file, so that
    positions stay meaningful across chunks.
    """

    def raw_of(position: int) -> bytes:
        return csv_row(frame, position - first_position)

    def parse(first: int, end: int) -> ParsedBatch:
        part = frame if end - first == len(frame) else frame.iloc[first:end]
        return _finish(_csv_rows(part), limits, raw_of, first_position + first)

    return _isolated(parse, len(frame), raw_of, first_position)


def _csv_rows(frame: pd.DataFrame) -> _Rows:
    rows = _Rows(len(frame))
    rows.series = frame["series"].tolist()
    for i in _not_utf8(frame):
        rows.fail(i, RejectReason.NOT_UTF8, "row is not UTF-8")
    rows.fail_each(_empty(frame["series"]), RejectReason.MISSING_SERIES, "series is empty")
    rows.fail_each(_empty(frame["ts"]), RejectReason.MISSING_TS, "ts is empty")
    texts = frame["ts"].tolist()
    rows.plain_ts_ms = _plain_digits(texts)
    rows.ts = rows.plain_ts_ms.tolist()
    # The other texts row by row: a signed or non-ASCII epoch ms is still one, to be checked.
    for i in np.flatnonzero(rows.plain_ts_ms < 0).tolist():
        rows.ts[i] = texts[i] if _EPOCH_MS.fullmatch(texts[i]) is None else int(texts[i])
    rows.price = _csv_numbers(frame["price"], rows, "price")
    if "volume" in frame.columns:
        rows.volume = _csv_numbers(frame["volume"], rows, "volume")
    return rows


def csv_row(frame: pd.DataFrame, row: int) -> bytes:
    """Row ``row`` (0-based in ``frame``) of a tick CSV as its file had it."""
    return _csv_row_bytes([frame[c].iat[row] for c in CSV_COLUMNS if c in frame.columns])


def _csv_row_bytes(fields: list[Any]) -> bytes:
    """A CSV row as its file had it: surrogate escapes back to the bytes they stand for."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    try:
        return out.getvalue().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file read gives: the frame was built so
        return out.getvalue().encode("utf-8", "backslashreplace")


def _not_utf8(frame: pd.DataFrame) -> list[int]:
    """Rows holding a lone surrogate, which is how surrogateescape reads a byte that is
    not UTF-8. A whole column is tested at once; only a column that fails, row by row."""
    bad: set[int] = set()
    for column in (c for c in CSV_COLUMNS if c in frame.columns):
        texts = frame[column].tolist()
        if not _is_utf8(texts):
            bad.update(i for i, text in enumerate(texts) if not _is_utf8([text]))
    return sorted(bad)


def _is_utf8(texts: list[Any]) -> bool:
    """Whether the texts hold no lone surrogate (a value that is no text holds none)."""
    try:
        "".join(texts).encode("utf-8")
    except TypeError:
        return _is_utf8([t for t in texts if isinstance(t, str)])
    except UnicodeEncodeError:
        return False
    return True


def _isolated(
    parse: Callable[[int, int], ParsedBatch],
    size: int,
    raw_of: Callable[[int], bytes],
    first_position: int = 0,
) -> ParsedBatch:
    """``parse(0, size)``, the whole batch at once; if that raises (a bug, or input numpy
    or pandas choke on), each message alone, so that only one that raises by itself is
    lost, as a reject (internal_error)."""
    try:
        return parse(0, size)
    except Exception as exc:  # whatever it is, it must not cost the other messages
        log.debug("parsing a batch of %d ticks raised (%s); parsing each alone",
                  size, internal_error_detail(exc))  # fmt: skip
    parts, rejects = [empty_columns()], []
    for i in range(size):
        try:
            alone = parse(i, i + 1)
        except Exception as exc:  # this message is the one; it becomes a dead letter
            log_internal_error("parsing a tick", exc)
            raw = _raw_or_nothing(raw_of, first_position + i)
            detail = internal_error_detail(exc)
            rejects.append(Rejected(first_position + i, raw, RejectReason.INTERNAL_ERROR, detail))
            continue
        parts.append(alone.ticks)
        rejects.extend(alone.rejects)
    return ParsedBatch(_concat(parts), rejects, received=size, raw_of=raw_of)


def _raw_or_nothing(raw_of: Callable[[int], bytes], position: int) -> bytes:
    try:
        return raw_of(position)
    except Exception as exc:  # a dead letter without its bytes beats none at all
        log_internal_error("keeping a tick's raw bytes", exc)
        return b""


def _concat(parts: list[TickColumns]) -> TickColumns:
    return TickColumns(
        position=np.concatenate([p.position for p in parts]),
        series=[name for p in parts for name in p.series],
        ts=np.concatenate([p.ts for p in parts]),
        price=np.concatenate([p.price for p in parts]),
        volume=np.concatenate([p.volume for p in parts]),
        partition=np.concatenate([p.partition for p in parts]),
    )


def _empty(column: pd.Series[str]) -> list[int]:
    return np.flatnonzero(column.to_numpy(object) == "").tolist()


def _plain_digits(texts: list[str]) -> IntArray:
    """The value of each text that is 1-18 ASCII digits; -1 for any other text.

    >>> _plain_digits(["1700000000000", "007", "+5", "", "1.5", "\u0661", "1" * 19]).tolist()
    [1700000000000, 7, -1, -1, -1, -1, -1]
    """
    width = _PLAIN_DIGITS
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    # One row of code points per text, cut at ``width`` (a longer text fails on its length);
    # code points below "0" wrap around to huge values, so "<= 9" alone tests for a digit.
    codes = np.array(texts, dtype=f"U{width}").view(np.uint32).reshape(len(texts), width)
    digits = codes - np.uint32(ord("0"))
    in_text = np.arange(width) < lengths[:, None]
    is_digit = digits <= 9
    plain = (is_digit | ~in_text).all(axis=1) & (lengths >= 1) & (lengths <= width)
    # Read as ``width`` digits padded with zeros on the right, then shifted back.
    padded = np.where(in_text & is_digit, digits, 0) @ _POWERS_OF_TEN[width - 1 :: -1]
    values = padded // _POWERS_OF_TEN[width - np.minimum(lengths, width)]
    return np.where(plain, values, -1)


def _csv_numbers(column: pd.Series[str], rows: _Rows, name: str) -> FloatArray:
    """The column as floats; NaN marks an empty volume (absent) and any row that failed.

    A text that pandas reads as a number as it stands is taken as read; only the others
    (padded, NaN, empty, not a number) are stripped and classified, row by row.
    """
    numbers = np.array(pd.to_numeric(column, errors="coerce"), np.float64)  # writable
    suspect = np.flatnonzero(np.isnan(numbers))
    if len(suspect):
        numbers[suspect] = _classify_numbers(column.iloc[suspect], suspect, rows, name)
    return numbers


def _classify_numbers(
    column: pd.Series[str], row_of: IntArray, rows: _Rows, name: str
) -> FloatArray:
    """Numbers of texts that are not plain numbers; each row that is none fails with its reason."""
    text = column.str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    nan_literal = text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
    empty = (text == "").to_numpy()
    for k in np.flatnonzero(np.isnan(numbers) & ~(empty & (name == "volume"))).tolist():
        failure = _number_failure(name, str(column.iat[k]), empty[k], nan_literal[k])
        rows.fail(int(row_of[k]), *failure)
    return numbers


def _number_failure(
    name: str, text: str, empty: bool, nan_literal: bool
) -> tuple[RejectReason, str]:
    price = name == "price"
    if empty:
        return RejectReason.MISSING_PRICE, "price is empty"
    if nan_literal:
        if price:
            return RejectReason.PRICE_NOT_FINITE, "price is NaN"
        return RejectReason.VOLUME_INVALID, "volume is NaN"
    reason = RejectReason.PRICE_TYPE if price else RejectReason.VOLUME_TYPE
    return reason, f"{name} {text[:64]!r} is not a number"


def _extract_json(rows: _Rows, i: int, payload: bytes) -> None:
    try:
        text = payload.decode("utf-8")
        brackets = text.count("[") + text.count("{")  # a cheap bound of the depth first
        if brackets > MAX_JSON_DEPTH and _json_depth(text) > MAX_JSON_DEPTH:
            rows.fail(i, RejectReason.INVALID_JSON,
                      f"message nests deeper than {MAX_JSON_DEPTH} levels")  # fmt: skip
            return
        obj = json.loads(text)
    except UnicodeDecodeError as exc:
        rows.fail(i, RejectReason.NOT_UTF8, f"message is not UTF-8: {exc.reason}")
        return
    except (ValueError, RecursionError) as exc:
        rows.fail(i, RejectReason.INVALID_JSON, f"message is not JSON: {exc}")
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


def _json_number(rows: _Rows, i: int, value: Any, name: str, wrong_type: RejectReason) -> float:
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


def _finish(
    rows: _Rows,
    limits: InputLimits,
    raw_of: Callable[[int], bytes],
    first_position: int,
    now_ns: int | None = None,
) -> ParsedBatch:
    _check_series(rows, limits.max_series_chars)
    ts = _check_ts(rows)
    _check_bounds(rows, limits, ts)
    if now_ns is not None and limits.max_future_skew_ns > 0:
        _check_future(rows, ts, now_ns, limits.max_future_skew_ns)
    _check_price(rows)
    _check_volume(rows)
    ok = rows.ok()
    index = np.flatnonzero(ok)
    ticks = TickColumns(
        position=index.astype(np.int64) + first_position,
        series=rows.series if len(index) == len(ok) else _pick(rows.series, index),
        ts=ts[index],
        price=rows.price[index],
        volume=rows.volume[index],
        partition=np.zeros(len(index), np.int32),
    )
    rejects = [
        Rejected(first_position + int(i), raw_of(first_position + int(i)), reason, rows.detail[i])
        for i in np.flatnonzero(~ok)
        if (reason := rows.reason[i]) is not None
    ]
    return ParsedBatch(ticks=ticks, rejects=rejects, received=len(rows.reason), raw_of=raw_of)


def _check_series(rows: _Rows, max_chars: int) -> None:
    """Each distinct series id once (a batch has far fewer ids than ticks)."""
    faults = {
        name: fault
        for name in set(rows.series)
        if isinstance(name, str) and (fault := _series_fault(name, max_chars)) is not None
    }  # an id that is no string failed already
    if faults:
        for i, name in enumerate(rows.series):
            if isinstance(name, str) and (fault := faults.get(name)) is not None:
                rows.fail(i, *fault)


def _series_fault(name: str, max_chars: int) -> tuple[RejectReason, str] | None:
    """Why ``name`` is no series id (module docstring), or None if it is one.

    >>> _series_fault("日経225", 200) is None, _series_fault("EUR/USD ", 200)
    (True, (<RejectReason.SERIES_INVALID: 'series_invalid'>, 'series has whitespace at an end'))
    """
    if not 1 <= len(name) <= max_chars:
        detail = f"series must be 1-{max_chars} characters, got {len(name)}"
        return RejectReason.SERIES_LENGTH, detail
    if name.isprintable() and name[0] != " " and name[-1] != " ":
        return None  # the usual id, at C speed: no C*, Z* but the space, nor unassigned
    for index, char in enumerate(name):
        if (kind := _forbidden_kind(char)) is not None:
            detail = f"series has {kind} (U+{ord(char):04X}) at index {index}"
            return RejectReason.SERIES_INVALID, detail
    if name != name.strip():
        return RejectReason.SERIES_INVALID, "series has whitespace at an end"
    return None


_FORBIDDEN_CATEGORIES = {
    "Cc": "a control character",
    "Cs": "a surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cf": "an invisible format character",
}
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ and ZWJ: some scripts and emoji are spelt with them


def _forbidden_kind(char: str) -> str | None:
    """What kind of character a series id may not hold ``char`` is, or None."""
    category = unicodedata.category(char)
    if category in _FORBIDDEN_CATEGORIES and char not in _JOINERS:
        return _FORBIDDEN_CATEGORIES[category]
    code = ord(char)
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return "a noncharacter"
    return None


def _check_bounds(rows: _Rows, limits: InputLimits, ts: IntArray) -> None:
    """The configurable sanity bounds of ts and price, on rows that are well-formed so far."""
    ok = rows.ok()
    for i in np.flatnonzero(ok & ((ts < limits.min_ts_ns) | (ts > limits.max_ts_ns))):
        rows.fail(int(i), RejectReason.TS_OUT_OF_RANGE,
                  f"ts {rows.ts[i]!r} is outside the configured min_ts..max_ts")  # fmt: skip
    price = rows.price
    with np.errstate(invalid="ignore"):
        outside = (
            np.isfinite(price)
            & (price > 0)
            & ((price < limits.min_price) | (price > limits.max_price))
        )
    for i in np.flatnonzero(ok & outside):
        bounds = f"{limits.min_price}..{limits.max_price}"
        rows.fail(int(i), RejectReason.PRICE_OUT_OF_RANGE, f"price {price[i]} is outside {bounds}")


def _check_future(rows: _Rows, ts: IntArray, now_ns: int, skew_ns: int) -> None:
    latest = min(now_ns + skew_ns, int(np.iinfo(np.int64).max))
    for i in np.flatnonzero(rows.ok() & (ts > latest)).tolist():
        ahead = f"{(int(ts[i]) - now_ns) / 1e9:.3f} s ahead of the clock"
        detail = f"ts {rows.ts[i]!r} is {ahead} (at most {skew_ns / 1e9:g} s allowed)"
        rows.fail(i, RejectReason.TS_IN_FUTURE, detail)


def _check_ts(rows: _Rows) -> IntArray:
    """Epoch nanoseconds of every row (0 where the row failed)."""
    plain = rows.plain_ts_ms
    out = np.where((plain >= 0) & (plain <= MAX_EPOCH_MS), plain, 0) * 1_000_000
    for i in np.flatnonzero(plain > MAX_EPOCH_MS).tolist():
        rows.fail(i, RejectReason.TS_OUT_OF_RANGE, f"epoch ms {rows.ts[i]} is out of range")
    text_rows: list[int] = []
    for i in np.flatnonzero(plain < 0).tolist():
        ts = rows.ts[i]
        if isinstance(ts, bool) or ts is None:
            continue
        if isinstance(ts, int):
            if 0 <= ts <= MAX_EPOCH_MS:
                out[i] = ts * 1_000_000
            else:
                rows.fail(i, RejectReason.TS_OUT_OF_RANGE,
                          f"epoch ms {_digits(ts)} is out of range")  # fmt: skip
        elif isinstance(ts, str):
            if _RFC3339.fullmatch(ts):
                text_rows.append(i)
            elif _RFC3339_NO_ZONE.fullmatch(ts):
                rows.fail(i, RejectReason.TS_NO_TIMEZONE, f"ts {ts!r} has no timezone")
            else:
                rows.fail(i, RejectReason.TS_FORMAT, f"ts {ts[:64]!r} is not RFC 3339")
    if text_rows:
        _parse_rfc3339(rows, text_rows, out)
    return out


def _digits(number: int) -> str:
    """``number`` in decimal, its middle cut out if it is long.

    >>> _digits(-10**30)
    '-100000000...000000000 (31 digits)'
    """
    text = str(number)
    digits = len(text.lstrip("-"))
    return text if digits <= 24 else f"{text[:10]}...{text[-9:]} ({digits} digits)"


def _parse_rfc3339(rows: _Rows, text_rows: list[int], out: IntArray) -> None:
    """Parse the well-formed timestamp strings at ``text_rows`` into ``out`` (epoch ns)."""
    texts = [rows.ts[i] for i in text_rows]
    parsed = pd.to_datetime(
        # RFC 3339 allows a lower-case "t" and "z"; pandas does not.
        pd.Series([text.upper() for text in texts]),
        format="ISO8601",
        utc=True,
        errors="coerce",
    )
    # In pandas' unit of this batch (us unless a text has ns), to test before scaling to ns:
    # a year like 5000 would wrap around int64 into the valid range.
    unit = parsed.dt.unit
    values = parsed.to_numpy(dtype=f"datetime64[{unit}]").view(np.int64)
    ns_per_unit = int(np.timedelta64(1, unit) // np.timedelta64(1, "ns"))
    nat = parsed.isna().to_numpy()
    fine = ~nat & (values >= 0) & (values <= MAX_EPOCH_MS * 1_000_000 // ns_per_unit)
    at = np.asarray(text_rows, np.intp)
    out[at[fine]] = values[fine] * ns_per_unit
    for k in np.flatnonzero(~fine).tolist():
        text = texts[k]
        if nat[k]:  # out of range for ns in a batch that has them; else not a valid time
            year = int(text[:4])
            rows.fail(text_rows[k], *_time_failure(text, year < _FIRST_NS_YEAR,
                                                   year > _LAST_NS_YEAR))  # fmt: skip
        else:
            rows.fail(text_rows[k], *_time_failure(text, values[k] < 0, values[k] >= 0))


def _time_failure(text: str, early: bool, late: bool) -> tuple[RejectReason, str]:
    if early:
        return RejectReason.TS_OUT_OF_RANGE, f"ts {text!r} is before 1970"
    if late:
        return RejectReason.TS_OUT_OF_RANGE, f"ts {text!r} is after 2255-03-14"
    return RejectReason.TS_FORMAT, f"ts {text!r} is not a valid time"


def _check_price(rows: _Rows) -> None:
    price = rows.price
    with np.errstate(invalid="ignore"):
        not_finite = ~np.isfinite(price)
        not_positive = np.isfinite(price) & (price <= 0)
    for i in np.flatnonzero(not_finite):
        rows.fail(int(i), RejectReason.PRICE_NOT_FINITE, f"price {price[i]} is not finite")
    for i in np.flatnonzero(not_positive):
        rows.fail(int(i), RejectReason.PRICE_NOT_POSITIVE, f"price {price[i]} is not > 0")


def _check_volume(rows: _Rows) -> None:
    volume = rows.volume
    with np.errstate(invalid="ignore"):
        bad = np.isinf(volume) | (volume < 0)
    for i in np.flatnonzero(bad):
        rows.fail(int(i), RejectReason.VOLUME_INVALID,
                  f"volume {volume[i]} must be finite and >= 0")  # fmt: skip
