"""Ticks from the rows of a tick CSV (replays): columns ``series``, ``ts``, ``price`` and
an optional ``volume``, read as text. Plain digit timestamps and plain numbers are read a
whole column at a time; any other text row by row, so a row comes out the same in any chunk.

>>> frame = pd.DataFrame({"series": ["A", "A"], "ts": ["1000", "x"], "price": ["1.5", "2"]})
>>> batch = parse_csv_frame(frame, first_position=10)
>>> batch.ticks.ts.tolist(), [(r.position, r.raw) for r in batch.rejects]
([1000000000], [(11, b'A,x,2')])
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecaster.core.ticks.columns import ParsedBatch
from forecaster.core.ticks.format import DEFAULT_LIMITS, InputLimits, RejectReason
from forecaster.core.ticks.isolation import isolated
from forecaster.core.ticks.rules import Rows, finish

CSV_COLUMNS = ("series", "ts", "price", "volume")
# Columns of a frame read record by record (forecaster.io.csv_records): why a row is no
# CSV row of the header's shape ("" if it is one), and that record's text.
MALFORMED, RAW = "_malformed", "_raw"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EPOCH_MS = re.compile(r"[+-]?\d{1,19}")
_PLAIN_DIGITS = 18  # the most decimal digits that always fit in an int64
_POWERS_OF_TEN = 10 ** np.arange(_PLAIN_DIGITS + 1, dtype=np.int64)


def parse_csv_frame(
    frame: pd.DataFrame, first_position: int = 0, limits: InputLimits = DEFAULT_LIMITS
) -> ParsedBatch:
    """Parse rows of a tick CSV read with ``dtype=str, keep_default_na=False`` (and
    ``encoding_errors="surrogateescape"``, so that a row that is not UTF-8 is a reject).

    ``first_position`` is the row number of the frame's first row in its file, so that
    positions stay meaningful across chunks.
    """

    rows = _FileRows(frame)

    def raw_of(position: int) -> bytes:
        return rows.raw(position - first_position)

    def parse(first: int, end: int) -> ParsedBatch:
        part = frame if end - first == len(frame) else frame.iloc[first:end]
        return finish(_csv_rows(part), limits, raw_of, first_position + first)

    return isolated(parse, len(frame), raw_of, first_position)


def _csv_rows(frame: pd.DataFrame) -> Rows:
    rows = Rows(len(frame))
    rows.series = frame["series"].tolist()
    if MALFORMED in frame.columns:
        for i, detail in enumerate(frame[MALFORMED].tolist()):
            if detail:
                rows.fail(i, RejectReason.CSV_FIELDS, detail)
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
    return _FileRows(frame).raw(row)


class _FileRows:
    """A frame's rows as its file had them, for dead letters. The columns are read into
    lists once, at the first row asked for: pandas' access to one cell costs ~100 µs, and
    a file of bad rows asks for every row (a replay of 500,000 rejects ran at 2,600 rows
    a second that way)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._columns: list[list[Any]] | None = None
        self._records: list[Any] | None = None  # the records read one by one, if any

    def raw(self, row: int) -> bytes:
        if self._columns is None:
            frame = self._frame
            self._columns = [frame[c].tolist() for c in CSV_COLUMNS if c in frame.columns]
            self._records = frame[RAW].tolist() if RAW in frame.columns else None
        if self._records is not None and (record := str(self._records[row])):
            return _file_bytes(record)
        return _file_bytes(csv_text([column[row] for column in self._columns]))


def csv_text(fields: list[Any]) -> str:
    """``fields`` as one CSV row, without its line end."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def _file_bytes(text: str) -> bytes:
    """A row's text as its file had it: surrogate escapes back to the bytes they stand for."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file read gives: the frame was built so
        return text.encode("utf-8", "backslashreplace")


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


def _csv_numbers(column: pd.Series[str], rows: Rows, name: str) -> FloatArray:
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
    column: pd.Series[str], row_of: IntArray, rows: Rows, name: str
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
