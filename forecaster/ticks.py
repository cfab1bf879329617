"""The tick format: parse raw messages or CSV rows into columns, or reject them with a reason.

A tick is a JSON object ``{"series": str, "ts": str | int, "price": number}`` with an
optional ``"volume"``; unknown fields are ignored. ``ts`` is an RFC 3339 timestamp with a
zone, or epoch milliseconds. Parsing never raises on bad input: every message either
becomes a row of :class:`TickColumns` or a :class:`Rejected` naming the rule it broke.

>>> batch = parse_messages([b'{"series": "AAPL", "ts": 1700000000000, "price": 189.5}',
...                         b'{"series": "AAPL", "price": -1}'])
>>> batch.ticks.series, batch.ticks.price.tolist()
(['AAPL'], [189.5])
>>> batch.rejects[0].reason
<RejectReason.MISSING_TS: 'missing_ts'>
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

MAX_SERIES_CHARS = 200
MAX_EPOCH_MS = 9_000_000_000_000  # 2255-03-14; beyond it nanoseconds overflow int64
CSV_COLUMNS = ("series", "ts", "price", "volume")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_RFC3339_NO_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?")
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


DEFAULT_LIMITS = InputLimits()


def rfc3339_ns(text: str) -> int:
    """Epoch nanoseconds of an RFC 3339 timestamp with a zone; ValueError if it is not one.

    >>> rfc3339_ns("1970-01-01T00:00:01Z")
    1000000000
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp with a zone")
    return int(pd.Timestamp(text.upper()).value)


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


def parse_messages(payloads: Sequence[bytes], limits: InputLimits = DEFAULT_LIMITS) -> ParsedBatch:
    """Parse JSON tick messages (one per payload)."""
    rows = _Rows(len(payloads))
    for i, payload in enumerate(payloads):
        if len(payload) > limits.max_message_bytes:
            rows.fail(i, RejectReason.MESSAGE_TOO_LARGE,
                      f"message of {len(payload)} bytes > {limits.max_message_bytes}")  # fmt: skip
        else:
            _extract_json(rows, i, payload)
    return _finish(rows, limits, raw_of=lambda i: bytes(payloads[i]))


def parse_csv_frame(
    frame: pd.DataFrame, first_position: int = 0, limits: InputLimits = DEFAULT_LIMITS
) -> ParsedBatch:
    """Parse rows of a tick CSV read with ``dtype=str, keep_default_na=False``.

    ``first_position`` is the row number of the frame's first row in its file, so that
    positions stay meaningful across chunks.
    """
    rows = _Rows(len(frame))
    rows.series = frame["series"].tolist()
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
    columns = [c for c in CSV_COLUMNS if c in frame.columns]

    def raw_of(position: int) -> bytes:
        out = io.StringIO()
        row = position - first_position
        csv.writer(out, lineterminator="").writerow([frame[c].iat[row] for c in columns])
        return out.getvalue().encode()

    return _finish(rows, limits, raw_of=raw_of, first_position=first_position)


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
        obj = json.loads(payload.decode("utf-8"))
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
    if series is not None and not isinstance(series, str):
        rows.fail(i, RejectReason.SERIES_TYPE, f"series must be a string, not {_kind(series)}")
    rows.series[i] = series
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | str)):
        rows.fail(i, RejectReason.TS_TYPE, f"ts must be a string or integer, not {_kind(ts)}")
    rows.ts[i] = ts
    rows.price[i] = _json_number(rows, i, price, "price", RejectReason.PRICE_TYPE)
    if volume is not None:
        rows.volume[i] = _json_number(rows, i, volume, "volume", RejectReason.VOLUME_TYPE)
        if math.isnan(rows.volume[i]):
            rows.fail(i, RejectReason.VOLUME_INVALID, "volume is NaN")


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
    rows: _Rows, limits: InputLimits, raw_of: Callable[[int], bytes], first_position: int = 0
) -> ParsedBatch:
    _check_series(rows, limits.max_series_chars)
    ts = _check_ts(rows)
    _check_bounds(rows, limits, ts)
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
    lengths = np.fromiter(
        (len(s) if isinstance(s, str) else 1 for s in rows.series), np.int64, len(rows.series)
    )  # a series that is no string failed already
    for i in np.flatnonzero((lengths < 1) | (lengths > max_chars)).tolist():
        rows.fail(i, RejectReason.SERIES_LENGTH,
                  f"series must be 1-{max_chars} characters, got {lengths[i]}")  # fmt: skip


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
                rows.fail(i, RejectReason.TS_OUT_OF_RANGE, f"epoch ms {ts} is out of range")
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


def _parse_rfc3339(rows: _Rows, text_rows: list[int], out: IntArray) -> None:
    """Parse the well-formed timestamp strings at ``text_rows`` into ``out`` (epoch ns)."""
    parsed = pd.to_datetime(
        # RFC 3339 allows a lower-case "t" and "z"; pandas does not.
        pd.Series([rows.ts[i].upper() for i in text_rows]),
        format="ISO8601",
        utc=True,
        errors="coerce",
    )
    nat = parsed.isna().to_numpy()
    values = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    for k, i in enumerate(text_rows):
        if nat[k]:
            rows.fail(i, RejectReason.TS_FORMAT, f"ts {rows.ts[i]!r} is not a valid time")
        elif values[k] < 0:
            rows.fail(i, RejectReason.TS_OUT_OF_RANGE, f"ts {rows.ts[i]!r} is before 1970")
        else:
            out[i] = values[k]


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
        rows.fail(int(i), RejectReason.VOLUME_INVALID, f"volume {volume[i]} must be >= 0")
