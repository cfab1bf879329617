"""The kernel decorator: NumPy's error model, and a kernel without a cache location."""

import numpy as np
import pytest

from forecaster.core.compiled import all_finite, kernel, nan_clip, nan_max, nan_min


def test_a_kernel_whose_source_has_no_cache_location_still_compiles() -> None:
    """As in a read-only install: Numba finds nowhere to write the kernel's cache."""
    namespace: dict[str, object] = {}
    source = "def total(values):\n    result = 0.0\n    for value in values:\n" \
             "        result += value\n    return result\n"  # fmt: skip
    exec(compile(source, "<generated>", "exec"), namespace)
    total = kernel(namespace["total"])
    assert total(np.arange(4.0)) == 6.0


def test_division_by_zero_gives_numpys_inf_and_nan() -> None:
    @kernel
    def divide(numerator: float, denominator: float) -> float:
        return numerator / denominator

    assert divide(1.0, 0.0) == np.inf
    assert np.isnan(divide(0.0, 0.0))


def test_nan_helpers_keep_nan_as_numpy_does() -> None:
    for value in (np.nan, -3.0, 0.5, 9.0):
        assert np.array_equal(nan_min(value, 1.0), np.minimum(value, 1.0), equal_nan=True)
        assert np.array_equal(nan_max(value, 1.0), np.maximum(value, 1.0), equal_nan=True)
        assert np.array_equal(nan_clip(value, -2.0, 2.0), np.clip(value, -2.0, 2.0), equal_nan=True)
    assert all_finite(np.ones((2, 3))) and not all_finite(np.array([[1.0, np.inf]]))


def test_an_index_past_the_end_raises_instead_of_writing_outside() -> None:
    @kernel
    def put(values: np.ndarray, index: int) -> None:
        values[index] = 1.0

    values = np.zeros(3)
    with pytest.raises(IndexError):
        put(values, 3)
    assert not values.any()
