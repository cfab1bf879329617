"""Compiled kernels: the per-row arithmetic of a round, as plain loops.

With a few series in a round, the engine's cost is NumPy's dispatch (about a microsecond
a call, hundreds of calls a round), not its arithmetic. So the per-row arithmetic of a
round (features, intervals, the skill heads, the recurrent step) is written as loops over
rows and compiled by Numba: one call a round, whatever the round's size. Compiled code
is cached beside its module (or in ``NUMBA_CACHE_DIR``), so only a process with a cold
cache pays the compilation (3-6 s for all of them), at each kernel's first call; where
no cache can be written, every process compiles afresh. Numba keys a kernel's cache on
its own file only: after editing a helper here in a working tree, delete the
``__pycache__`` folders of the modules that call it (an install writes every file anew).

``error_model="numpy"``: a division by zero gives inf or nan, as in NumPy, instead of
raising; ``boundscheck``: an index past an array's end raises IndexError, as in NumPy,
instead of reading or writing outside it (it cost nothing measurable in the engine's
rounds; the model's step, whose shapes are checked before, runs without: see
``unchecked_kernel``); no
``fastmath``: the kernels test for non-finite values, which fast math may assume away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import numba
import numpy as np

Function = TypeVar("Function", bound=Callable[..., Any])


def kernel(function: Function) -> Function:
    """``function`` compiled to machine code at its first call, with NumPy's semantics."""
    return _compiled(function, boundscheck=True)


def unchecked_kernel(function: Function) -> Function:
    """``kernel`` without bounds checks, for the model's inner loops alone: a check on every
    index keeps a loop from running vectorised (a 2x32 LSTM step, 4.7 -> 1.2 µs a row at
    50 rows). Its callers check every shape it indexes by, before the call."""
    return _compiled(function, boundscheck=False)


def inlined_kernel(function: Function) -> Function:
    """``unchecked_kernel`` whose code is written into each caller's (Numba's inlining):
    for a helper of a vectorised loop. Called, the model's per-unit gate helpers kept
    their loops from vectorising (2x32 LSTM at 1,000 rows, 1.85 µs a row against 0.40)."""
    return _compiled(function, boundscheck=False, inline="always")


def _compiled(
    function: Function, *, boundscheck: bool, inline: Literal["never", "always"] = "never"
) -> Function:
    def compiled_with(cache: bool) -> Any:
        return numba.njit(cache=cache, error_model="numpy", nogil=True,
                          boundscheck=boundscheck, inline=inline)(function)  # fmt: skip

    try:
        compiled = compiled_with(cache=True)
    except RuntimeError:  # no writable place for its cache (a read-only install)
        compiled = compiled_with(cache=False)
    return cast(Function, compiled)


# A number's minimum, maximum and clip as NumPy's: a NaN propagates (Python's min and
# max return whichever argument the comparisons happen to leave).
@kernel
def nan_min(value: float, ceiling: float) -> float:
    """``np.minimum(value, ceiling)`` of a number."""
    return value if value <= ceiling or np.isnan(value) else ceiling


@kernel
def nan_max(value: float, floor: float) -> float:
    """``np.maximum(value, floor)`` of a number."""
    return value if value >= floor or np.isnan(value) else floor


@kernel
def nan_clip(value: float, low: float, high: float) -> float:
    """``np.clip(value, low, high)`` of a number."""
    return low if value < low else high if value > high else value


@kernel
def all_finite(values: np.ndarray) -> bool:
    """``np.isfinite(values).all()``, without the array of booleans."""
    for value in values.flat:  # noqa: SIM110 (Numba compiles no generator into all())
        if not np.isfinite(value):
            return False
    return True
