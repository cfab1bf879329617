import pytest

from forecaster.core.ticks.format import InputLimits, rfc3339_ns


def test_a_negative_future_skew_is_refused() -> None:
    with pytest.raises(ValueError, match="max_future_skew_ns"):
        InputLimits(max_future_skew_ns=-1)


def test_rfc3339_ns_refuses_a_time_int64_nanoseconds_cannot_hold() -> None:
    with pytest.raises(ValueError, match="range"):
        rfc3339_ns("5000-01-01T00:00:00Z")
