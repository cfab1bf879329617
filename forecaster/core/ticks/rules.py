"""The rules every tick meets, whichever parser read it: a parser fills ``Rows`` with the
raw fields (and the failures it saw itself), then ``finish`` checks them rule by rule and
splits the batch into valid ticks and rejects. A row keeps the first rule it broke.

>>> rows = Rows(2)
>>> rows.series, rows.ts, rows.price[:] = ["A", "A "], [1, 1], [2.0, 2.0]
>>> batch = finish(rows, InputLimits(), lambda position: b"", first_position=0)
>>> batch.ticks.series, [(r.reason.value, r.detail) for r in batch.rejects]
(['A'], [('series_invalid', 'series has whitespace at an end')])
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecaster.core.ticks.columns import ParsedBatch, Rejected, TickColumns, pick
from forecaster.core.ticks.format import MAX_EPOCH_MS, RFC3339_NO_ZONE, InputLimits, RejectReason
from forecaster.timestamps import RFC3339

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Beyond these years int64 nanoseconds may not hold a time: pandas gives NaT or a coarser unit.
_FIRST_NS_YEAR, _LAST_NS_YEAR = 1678, 2261


class Rows:
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


def finish(
    rows: Rows,
    limits: InputLimits,
    raw_of: Callable[[int], bytes],
    first_position: int,
    now_ns: int | None = None,
) -> ParsedBatch:
    """Check ``rows`` against every rule (``now_ns``, the wall clock, checks how far
    ahead a tick may be) and split them into ticks and rejects."""
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
        series=rows.series if len(index) == len(ok) else pick(rows.series, index),
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


def _check_series(rows: Rows, max_chars: int) -> None:
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
    """Why ``name`` is no series id (the package docstring), or None if it is one.

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


def _check_bounds(rows: Rows, limits: InputLimits, ts: IntArray) -> None:
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


def _check_future(rows: Rows, ts: IntArray, now_ns: int, skew_ns: int) -> None:
    latest = min(now_ns + skew_ns, int(np.iinfo(np.int64).max))
    for i in np.flatnonzero(rows.ok() & (ts > latest)).tolist():
        ahead = f"{(int(ts[i]) - now_ns) / 1e9:.3f} s ahead of the clock"
        detail = f"ts {rows.ts[i]!r} is {ahead} (at most {skew_ns / 1e9:g} s allowed)"
        rows.fail(i, RejectReason.TS_IN_FUTURE, detail)


def _check_ts(rows: Rows) -> IntArray:
    """Epoch nanoseconds of every row (0 where the row failed)."""
    plain = rows.plain_ts_ms
    out = np.where((plain >= 0) & (plain <= MAX_EPOCH_MS), plain, 0) * 1_000_000
    for i in np.flatnonzero(plain > MAX_EPOCH_MS).tolist():
        rows.fail(i, RejectReason.TS_OUT_OF_RANGE, f"epoch ms {rows.ts[i]} is out of range")
    others = np.flatnonzero(plain < 0)
    if (stamps := utc_milliseconds_ns([rows.ts[i] for i in others.tolist()])) is not None:
        out[others] = stamps
        return out
    text_rows: list[int] = []
    for i in others.tolist():
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
            if RFC3339.fullmatch(ts):
                text_rows.append(i)
            elif RFC3339_NO_ZONE.fullmatch(ts):
                rows.fail(i, RejectReason.TS_NO_TIMEZONE, f"ts {ts!r} has no timezone")
            else:
                rows.fail(i, RejectReason.TS_FORMAT, f"ts {ts[:64]!r} is not RFC 3339")
    if text_rows:
        _parse_rfc3339(rows, text_rows, out)
    return out


# The form the service writes and most producers send, "2026-01-05T14:30:00.250Z": where
# its separators are, and its digits by field (year, month, day, hour, minute, second, ms).
_SEPARATORS = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: ".", 23: "Z"}
_FIELDS = ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19), (20, 23))
_UTC_MS_CHARS = 24
_LAST_FAST_YEAR = 2254  # before MAX_EPOCH_MS (2255-03-14): every such time is in range
_SEPARATOR_PLACES = list(_SEPARATORS)
_SEPARATOR_CODES = np.array([ord(char) for char in _SEPARATORS.values()], np.uint8)
_DIGIT_PLACES = np.delete(np.arange(_UTC_MS_CHARS), _SEPARATOR_PLACES)


def utc_milliseconds_ns(texts: list[Any]) -> IntArray | None:
    """Epoch nanoseconds of timestamps that are all UTC with milliseconds, as the service
    writes them, from 1970 to 2254, read in one pass over their bytes; None if any is
    not (a number, another form, an impossible date): the rule-by-rule path reads them.

    >>> utc_milliseconds_ns(["1970-01-01T00:00:01.500Z", "2024-02-29T23:59:59.999Z"]).tolist()
    [1500000000, 1709251199999000000]
    >>> utc_milliseconds_ns(["2023-02-29T00:00:00.000Z"]) is None  # no such day
    True
    """
    try:
        joined = "".join(texts)
    except TypeError:  # a ts that is no string
        return None
    if not texts or not joined.isascii() or set(map(len, texts)) != {_UTC_MS_CHARS}:
        return None
    chars = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(-1, _UTC_MS_CHARS)
    if not (chars[:, _SEPARATOR_PLACES] == _SEPARATOR_CODES).all():
        return None
    digits = chars.astype(np.int64) - ord("0")
    year, month, day, hour, minute, second, ms = (
        digits[:, first:end] @ 10 ** np.arange(end - first - 1, -1, -1) for first, end in _FIELDS
    )
    months = (year - 1970) * 12 + month - 1
    first_day = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    month_days = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    month_days -= first_day
    valid = (
        ((digits[:, _DIGIT_PLACES] >= 0) & (digits[:, _DIGIT_PLACES] <= 9)).all(axis=1)
        & (year >= 1970) & (year <= _LAST_FAST_YEAR) & (month >= 1) & (month <= 12)
        & (day >= 1) & (day <= month_days) & (hour < 24) & (minute < 60) & (second < 60)
    )  # fmt: skip
    if not valid.all():
        return None
    seconds = (first_day + day - 1) * 86_400 + hour * 3600 + minute * 60 + second
    stamps: IntArray = (seconds * 1000 + ms) * 1_000_000
    return stamps


def _digits(number: int) -> str:
    """``number`` in decimal, its middle cut out if it is long.

    >>> _digits(-10**30)
    '-100000000...000000000 (31 digits)'
    """
    text = str(number)
    digits = len(text.lstrip("-"))
    return text if digits <= 24 else f"{text[:10]}...{text[-9:]} ({digits} digits)"


def _parse_rfc3339(rows: Rows, text_rows: list[int], out: IntArray) -> None:
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


def _check_price(rows: Rows) -> None:
    price = rows.price
    with np.errstate(invalid="ignore"):
        not_finite = ~np.isfinite(price)
        not_positive = np.isfinite(price) & (price <= 0)
    for i in np.flatnonzero(not_finite):
        rows.fail(int(i), RejectReason.PRICE_NOT_FINITE, f"price {price[i]} is not finite")
    for i in np.flatnonzero(not_positive):
        rows.fail(int(i), RejectReason.PRICE_NOT_POSITIVE, f"price {price[i]} is not > 0")


def _check_volume(rows: Rows) -> None:
    volume = rows.volume
    with np.errstate(invalid="ignore"):
        bad = np.isinf(volume) | (volume < 0)
    for i in np.flatnonzero(bad):
        rows.fail(int(i), RejectReason.VOLUME_INVALID,
                  f"volume {volume[i]} must be finite and >= 0")  # fmt: skip
