"""How a serving process runs: one BLAS thread, a malloc that keeps memory, and a garbage
collector that leaves what start-up built alone.

Each batch allocates and frees arrays of hundreds of kilobytes (the rows of every
series it touches). Left to itself, glibc's malloc serves those with fresh ``mmap``
pages or trims its heap after each batch, so the next batch faults every page in again:
at 1,000 series that was 40 % of the engine's CPU time per tick
(``benchmarks/bench_step.py``; benchmarks/README.md). Fixed thresholds keep the heap:

- arrays up to ``MMAP_THRESHOLD`` come from the heap, not from ``mmap``;
- up to ``TRIM_THRESHOLD`` of freed memory at the heap's top stays with the process.

Every object alive when serving starts (modules, the compiled kernels, the model, the
clients) lives as long as the process, yet Python's full collections scanned them all
again: 8 of them in 50 s of the Kafka service, up to 115 ms each, made its p99 latency
(benchmarks/README.md, bench_latency.py). ``gc.freeze`` moves them out of the
collector's sight while serving runs.

>>> with serving_runtime():
...     pass
"""

from __future__ import annotations

import ctypes
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

# The engine's matrix products are small: extra BLAS threads buy nothing, and beside a
# training child they spin for a core it needs (retraining cut throughput to 0.31x with
# OpenBLAS's default threads, 0.98x with one; benchmarks/bench_retrain.py).
BLAS_THREADS = 1
# A batch's arrays are below it (at 5,000 series the largest is 2.5 MB); larger ones
# (a re-warm's history) are mapped and unmapped whole. At 32 MB they fragmented the heap:
# 4,076-4,107 resident bytes per series at 100,000 series in bench_memory.py, against
# 3,681-3,729 at 4 MB, side by side; replay at 1,000 series moved the same either way.
MMAP_THRESHOLD = 4 * 2**20
# What is kept counts in the resident bytes per series (benchmarks/bench_memory.py): 64 MB
# made 4,173 bytes at 100,000 series, 8 MB 3,735, with no more faults per batch.
TRIM_THRESHOLD = 8 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


@contextmanager
def serving_runtime() -> Iterator[None]:
    """Run the block with one BLAS thread, the process's malloc thresholds fixed (once),
    and what is alive now frozen out of the garbage collector's scans."""
    keep_freed_memory()
    gc.freeze()
    try:
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            yield
    finally:
        gc.unfreeze()


def keep_freed_memory() -> bool:
    """Fix glibc malloc's thresholds for the whole process; False where there is no glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library the process runs on
    if mallopt is None:
        log.debug("no glibc mallopt here: malloc keeps its own thresholds")
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
