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

The package: ``format`` (the reject reasons, the input limits, timestamps), ``columns``
(a parsed batch: ticks as columns, rejects), ``rules`` (what every tick is checked for,
whichever parser read it), ``isolation`` (a message the parser raises on is rejected
alone), ``json_messages`` (live input) and ``csv_rows`` (replays). Callers import from
the package.
"""

from forecaster.core.ticks.columns import ParsedBatch, Rejected, TickColumns, empty_columns
from forecaster.core.ticks.csv_rows import MALFORMED, RAW, csv_row, csv_text, parse_csv_frame
from forecaster.core.ticks.format import (
    DEFAULT_LIMITS,
    MAX_EPOCH_MS,
    MAX_SERIES_CHARS,
    InputLimits,
    RejectReason,
)
from forecaster.core.ticks.json_messages import parse_messages

__all__ = [
    "DEFAULT_LIMITS",
    "MALFORMED",
    "MAX_EPOCH_MS",
    "MAX_SERIES_CHARS",
    "RAW",
    "InputLimits",
    "ParsedBatch",
    "RejectReason",
    "Rejected",
    "TickColumns",
    "csv_row",
    "csv_text",
    "empty_columns",
    "parse_csv_frame",
    "parse_messages",
]
