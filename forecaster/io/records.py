"""Wire encodings of forecasts and dead letters (JSON, one object per record).

Every encoding is valid UTF-8 JSON with no NaN or Infinity. A forecast that JSON cannot
carry so (a non-finite number, a string with a lone surrogate) raises ValueError, and
:func:`unencodable_rows` tells which rows of a batch do; a dead letter always encodes
(what cannot go as it is goes escaped) and keeps at most ``keep_bytes`` of its message.

>>> format_rfc3339(np.array([1_700_000_000_123_000_000, 1_700_000_000_000_000_001]))
['2023-11-14T22:13:20.123Z', '2023-11-14T22:13:20.000000001Z']
"""

from __future__ import annotations

import base64
import codecs
import json
import math
import operator
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from forecaster.core.engine import NAIVE, ForecastBatch
from forecaster.core.ticks import DEFAULT_LIMITS
from forecaster.io.base import DeadLetter

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def format_rfc3339(ts_ns: IntArray) -> list[str]:
    """RFC 3339 UTC strings with as many fraction digits as each timestamp needs (ms at least)."""
    return list(map(operator.add, *_rfc3339_parts(ts_ns)))


_MILLISECONDS = np.array([f".{ms:03d}Z" for ms in range(1000)], object)


def _rfc3339_parts(ts_ns: IntArray) -> tuple[list[str], list[str]]:
    """Each timestamp's RFC 3339 text in two parts: up to the second, and the fraction with
    the zone. A batch spans few seconds: each is formatted once, and whole milliseconds
    come from a table.

    >>> _rfc3339_parts(np.array([1_700_000_000_123_000_000, 1_700_000_000_000_000_001]))
    (['2023-11-14T22:13:20', '2023-11-14T22:13:20'], ['.123Z', '.000000001Z'])
    """
    seconds, fraction = np.divmod(ts_ns, 1_000_000_000)
    distinct, which = np.unique(seconds, return_inverse=True)
    texts = np.datetime_as_string(distinct.astype("datetime64[s]")).astype(object)
    fractions = _MILLISECONDS[fraction // 1_000_000]
    for row in np.flatnonzero(fraction % 1_000_000).tolist():  # finer than milliseconds
        ns = int(fraction[row])
        fractions[row] = f".{ns // 1000:06d}Z" if ns % 1000 == 0 else f".{ns:09d}Z"
    second_texts: list[str] = texts[which.reshape(-1)].tolist()
    return second_texts, fractions.tolist()


def forecast_records(batch: ForecastBatch) -> list[dict[str, Any]]:
    """The forecast objects of a batch, in order."""
    ticks = batch.ticks
    return [
        {"series": series, "ts": ts, "price": price, "forecast": forecast,
         "model_version": version, "lower": lower, "upper": upper}
        for series, ts, price, forecast, version, lower, upper in zip(
            ticks.series,
            format_rfc3339(ticks.ts),
            ticks.price.tolist(),
            batch.forecast.tolist(),
            batch.versions(),
            batch.lower.tolist(),
            batch.upper.tolist(),
            strict=True,
        )
    ]  # fmt: skip


def encode_forecasts(batch: ForecastBatch) -> list[bytes]:
    """Each forecast as JSON bytes, exactly as ``json.dumps(record, ensure_ascii=False)`` has it.

    Raises ValueError if a row cannot be encoded (see :func:`unencodable_rows`).

    >>> from forecaster.core.ticks import parse_messages
    >>> ticks = parse_messages([b'{"series":"A","ts":1,"price":2.0}']).ticks
    >>> f, none = np.array([2.5]), np.zeros(1)
    >>> batch = ForecastBatch(ticks, f, np.array([False]), "v1", none, none, f - 1, f + 1, none,
    ...                       none)
    >>> encode_forecasts(batch)[0] == json.dumps(forecast_records(batch)[0]).encode()
    True
    """
    return encode_forecast_lines(batch).split(b"\n")[:-1]


def encode_forecast_lines(batch: ForecastBatch) -> bytes:
    """The forecasts of a batch as JSON lines, each ended by a newline, in one block.

    >>> from forecaster.core.ticks import parse_messages
    >>> ticks = parse_messages([b'{"series":"A","ts":1,"price":2.0}'] * 2).ticks
    >>> f, none = np.array([2.5, 3.0]), np.zeros(2)
    >>> batch = ForecastBatch(ticks, f, np.array([False, True]), "v1", none, none, f - 1, f + 1,
    ...                       none, none)
    >>> lines = [json.dumps(record).encode() + b"\\n" for record in forecast_records(batch)]
    >>> encode_forecast_lines(batch) == b"".join(lines)
    True
    """
    return _forecast_lines(batch).encode()


def unencodable_rows(batch: ForecastBatch) -> list[tuple[int, Exception]]:
    """The rows whose forecast cannot be encoded, each with why, found by encoding each row
    alone: for a batch whose encoding raised. The other rows encode together.

    >>> from forecaster.core.ticks import parse_messages
    >>> ticks = parse_messages([b'{"series":"A","ts":1,"price":2.0}'] * 3).ticks
    >>> f, none = np.array([2.5, np.inf, 3.0]), np.zeros(3)
    >>> batch = ForecastBatch(ticks, f, np.array([False] * 3), "v1", none, none, f, f, none, none)
    >>> [(row, str(exc)) for row, exc in unencodable_rows(batch)]
    [(1, "forecast inf of series 'A' is not finite (JSON has no NaN or Infinity)")]
    """
    failed: list[tuple[int, Exception]] = []
    for row, record in enumerate(forecast_records(batch)):
        try:
            _record_text(record).encode()
        except Exception as exc:  # whatever the cause, this row is one that cannot go
            failed.append((row, exc))
    return failed


# The text around a forecast's seven values; a record's JSON text never holds a raw newline.
# The second and the fraction of a timestamp are two values, with nothing between them.
_FORECAST_FRAME = ('{"series": ', ', "ts": "', "", '", "price": ', ', "forecast": ',
                   ', "model_version": ', ', "lower": ', ', "upper": ', "}\n")  # fmt: skip
# The same for series names that go as they are: the frame quotes them.
_BARE_NAMES_FRAME = ('{"series": "', '", "ts": "', *_FORECAST_FRAME[2:])
# What json.dumps escapes in a string (with ensure_ascii=False).
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _forecast_lines(batch: ForecastBatch) -> str:
    """Every forecast of the batch as a JSON line, built a column at a time: each column's
    texts come at once (orjson writes floats ~10x faster than ``repr`` and, between 1e-4
    and 1e16, identically) and one join interleaves them with the frame. Non-finite
    numbers, which JSON has no form for, take the record-by-record path, which raises."""
    ticks = batch.ticks
    numbers = (ticks.price, batch.forecast, batch.lower, batch.upper)
    if not all(np.isfinite(column).all() for column in numbers):
        return "".join(_record_text(r) + "\n" for r in forecast_records(batch))
    names = _escaped(ticks.series)
    columns = [names or ticks.series, *_rfc3339_parts(ticks.ts), float_texts(ticks.price),
               float_texts(batch.forecast), _version_texts(batch), float_texts(batch.lower),
               float_texts(batch.upper)]  # fmt: skip
    n, stride = len(ticks), 2 * len(columns) + 1  # per record: frame, value, ..., value, frame
    pieces: list[str] = [""] * (stride * n)
    for k, frame in enumerate(_FORECAST_FRAME if names else _BARE_NAMES_FRAME):
        if frame:
            pieces[2 * k :: stride] = [frame] * n
    for k, column in enumerate(columns):
        pieces[2 * k + 1 :: stride] = column
    return "".join(pieces)


def _escaped(texts: list[str]) -> list[str] | None:
    """Each text as a JSON string, as ``json.dumps(text, ensure_ascii=False)`` writes it;
    None if every text goes as it is between quotes (none holds a quote, a backslash or a
    control character: the usual batch).

    >>> _escaped(["A", "B"]), _escaped(["A", 'q"'])
    (None, ['"A"', '"q\\\\""'])
    """
    distinct = set(texts)
    if _NEEDS_ESCAPE.search("".join(distinct)) is None:
        return None
    escaped = {text: _json_string(text) for text in distinct}
    return [escaped[text] for text in texts]


def _version_texts(batch: ForecastBatch) -> list[str]:
    choices = np.array([_json_string(batch.model_version), _json_string(NAIVE)], object)
    texts: list[str] = choices[batch.naive.astype(np.intp)].tolist()
    return texts


def float_texts(values: FloatArray) -> list[str]:
    """``repr`` of each (finite) value, at orjson's speed where it writes the same text.

    >>> float_texts(np.array([190.949, 1e16, -2.5e-05, 0.0001, -0.0]))
    ['190.949', '1e+16', '-2.5e-05', '0.0001', '-0.0']
    """
    if not len(values):
        return []
    data = np.ascontiguousarray(values, np.float64)
    texts = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")
    # Outside [1e-4, 1e16) repr writes an exponent as "e-05", "e+16"; orjson as "e-5", "e16".
    magnitude = np.abs(data)
    for i in np.flatnonzero((magnitude >= 1e16) | ((magnitude < 1e-4) & (magnitude > 0))).tolist():
        texts[i] = repr(float(data[i]))
    return texts


def _record_text(record: dict[str, Any]) -> str:
    for name in ("price", "forecast", "lower", "upper"):
        if not math.isfinite(record[name]):
            raise ValueError(f"{name} {record[name]} of series {record['series'][:64]!a} "
                             "is not finite (JSON has no NaN or Infinity)")  # fmt: skip
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def kept_bytes(raw: bytes, limit: int) -> bytes:
    r"""The first ``limit`` bytes of ``raw``; if they are UTF-8, cut back to the last whole
    character, so that the kept text still decodes.

    >>> kept_bytes("añb".encode(), 2), kept_bytes(b"\xff\xfe\xfd", 2), kept_bytes(b"ab", 5)
    (b'a', b'\xff\xfe', b'ab')
    """
    if len(raw) <= limit:
        return raw
    kept = raw[: max(limit, 0)]
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(kept)  # not final: a character cut at the end waits in the decoder
    except UnicodeDecodeError:
        return kept  # not UTF-8: there are no characters to keep whole
    cut, _ = decoder.getstate()
    return kept[: len(kept) - len(cut)]


def dead_letter_record(letter: DeadLetter, keep_bytes: int) -> dict[str, Any]:
    """The envelope of a rejected record: its reason, where it came from, its size, and its
    first ``keep_bytes`` bytes (:func:`kept_bytes`; ``truncated`` if that is not all of them),
    as ``raw`` text if they are UTF-8, else as ``raw_base64``.

    >>> from forecaster.core.ticks import Rejected, RejectReason
    >>> letter = DeadLetter(Rejected(0, b'{"series": 1}', RejectReason.SERIES_TYPE, "not a string"),
    ...                     {"file": "t.csv", "line": 2})
    >>> dead_letter_record(letter, keep_bytes=8)
    {'reason': 'series_type', 'detail': 'not a string', 'source': {'file': 't.csv', 'line': 2}, \
'size': 13, 'truncated': True, 'raw': '{"series'}
    """
    rejected = letter.rejected
    raw = bytes(rejected.raw)  # a bytearray or memoryview has no decode() of its own
    kept = kept_bytes(raw, keep_bytes)
    record: dict[str, Any] = {
        "reason": rejected.reason.value,
        "detail": rejected.detail,
        "source": letter.origin,
        "size": len(raw),
    }
    if len(kept) < len(raw):
        record["truncated"] = True
    try:
        record["raw"] = kept.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(kept).decode("ascii")
    return record


def encode_dead_letter(
    letter: DeadLetter, keep_bytes: int = DEFAULT_LIMITS.max_message_bytes
) -> bytes:
    r"""The dead letter as UTF-8 JSON (:func:`dead_letter_record`); never raises: a string
    that is not Unicode text (a lone surrogate) goes backslash-escaped, and anything else
    JSON has no form for (NaN, an object) as its ``repr``.

    >>> from forecaster.core.ticks import Rejected, RejectReason
    >>> letter = DeadLetter(Rejected(0, b"", RejectReason.INTERNAL_ERROR, "\ud800"),
    ...                     {"n": float("nan")})
    >>> print(encode_dead_letter(letter).decode())
    {"reason": "internal_error", "detail": "\\ud800", "source": {"n": "nan"}, "size": 0, "raw": ""}
    """
    record = dead_letter_record(letter, keep_bytes)
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError):
        return json.dumps(_jsonable(record), ensure_ascii=False, allow_nan=False).encode()


_MAX_DEPTH = 20


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` in a form json.dumps takes and UTF-8 can carry, whatever it is."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else hex(value)  # str() of a huge int raises
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict) and depth < _MAX_DEPTH:
        return {_jsonable(str(k)): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple) and depth < _MAX_DEPTH:
        return [_jsonable(v, depth + 1) for v in value]
    try:
        return _jsonable(repr(value))
    except Exception:  # a repr that raises: there is nothing of it to show
        return f"<{type(value).__name__}>"
