"""Times as the service counts them, in nanoseconds: of RFC 3339 text, of seconds.

Neutral ground: the settings check their ``min_ts`` and ``max_ts`` with it, the tick
format parses with the same pattern, the parts' parameters count their durations with
it, and none of them has to import another.

>>> rfc3339_ns("1970-01-01T00:00:01Z"), rfc3339_ns("1970-01-01t01:00:00.5+01:00")
(1000000000, 500000000)
>>> seconds_ns(1.5)
1500000000
>>> rfc3339_ns("1970-01-01T00:00:01")
Traceback (most recent call last):
...
ValueError: '1970-01-01T00:00:01' is not an RFC 3339 timestamp with a zone
"""

from __future__ import annotations

import re

NS_PER_S = 1_000_000_000

# ASCII digits only: pandas reads no others in a timestamp (int() does, in epoch ms).
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def rfc3339_ns(text: str) -> int:
    """Epoch nanoseconds of an RFC 3339 timestamp with a zone; ValueError if it is not one."""
    import pandas as pd  # not at import: the command line's help reads the settings

    if not RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp with a zone")
    try:
        return int(pd.Timestamp(text.upper()).value)
    except OverflowError:
        raise ValueError(f"{text!r} is out of the range of int64 nanoseconds") from None


def seconds_ns(seconds: float) -> int:
    """``seconds`` in whole nanoseconds (a fraction of one is dropped)."""
    return int(seconds * NS_PER_S)
