"""The tick format's vocabulary: the reasons a tick is refused, its limits, its timestamps.

>>> RejectReason.TS_IN_FUTURE.value, DEFAULT_LIMITS.max_series_chars
('ts_in_future', 200)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from forecaster.config import Settings
from forecaster.timestamps import rfc3339_ns, seconds_ns

MAX_SERIES_CHARS = Settings.max_series_chars
MAX_EPOCH_MS = 9_000_000_000_000  # 2255-03-14; beyond it nanoseconds overflow int64

RFC3339_NO_ZONE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
)


class RejectReason(StrEnum):
    """The rule a rejected tick broke; the value is what dead letters carry."""

    NOT_UTF8 = "not_utf8"
    CSV_FIELDS = "csv_fields"
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

    >>> from forecaster.core.ticks import parse_messages
    >>> limits = InputLimits(max_price=1000.0)
    >>> parse_messages([b'{"series":"X","ts":1,"price":5000}'], limits).rejects[0].reason.value
    'price_out_of_range'
    """

    max_message_bytes: int = Settings.max_message_bytes  # a longer message is not decoded
    max_series_chars: int = MAX_SERIES_CHARS
    min_price: float = Settings.min_price
    max_price: float = Settings.max_price
    min_ts_ns: int = rfc3339_ns(Settings.min_ts)
    max_ts_ns: int = rfc3339_ns(Settings.max_ts)
    # Live input only: a tick this far ahead of the wall clock (``now_ns`` at parse) is
    # rejected as ts_in_future; 0 = no check.
    max_future_skew_ns: int = seconds_ns(Settings.max_future_skew_s)

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
