import pytest

from forecaster.core.ticks.format import InputLimits


def test_a_negative_future_skew_is_refused() -> None:
    with pytest.raises(ValueError, match="max_future_skew_ns"):
        InputLimits(max_future_skew_ns=-1)
