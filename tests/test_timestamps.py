import pytest

from forecaster.timestamps import rfc3339_ns


def test_rfc3339_ns_refuses_a_time_int64_nanoseconds_cannot_hold() -> None:
    with pytest.raises(ValueError, match="range"):
        rfc3339_ns("5000-01-01T00:00:00Z")
