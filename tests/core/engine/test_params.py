import pytest

from forecaster.core.engine import EngineParams


def test_block_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="block_rows must be >= 1"):
        EngineParams(block_rows=0)
