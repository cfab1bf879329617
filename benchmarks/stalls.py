"""How often this machine stops a busy process: the context for every figure here.

One thread repeats a fixed NumPy work item (~5 ms on an idle core) for ``--seconds`` and
reports how long the items took: on a quiet machine the p99 is close to the median; on
a shared VM single items take up to seconds, and such stalls are then part of every
latency and rate measured beside them.

    python benchmarks/stalls.py --seconds 60 --json benchmarks/results/stalls.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import parser, report
from threadpoolctl import threadpool_limits

MATRIX = 256
ROUNDS = 20


def work_item(a: np.ndarray) -> None:
    x = a
    for _ in range(ROUNDS):
        x = np.tanh(x @ a * np.float32(0.01))


def item_times_ms(seconds: float) -> np.ndarray:
    """Milliseconds each work item took, for ``seconds`` of back-to-back items."""
    a = np.random.default_rng(0).normal(size=(MATRIX, MATRIX)).astype(np.float32)
    times: list[float] = []
    deadline = time.monotonic() + seconds
    with threadpool_limits(1, user_api="blas"):
        while time.monotonic() < deadline:
            started = time.perf_counter()
            work_item(a)
            times.append((time.perf_counter() - started) * 1e3)
    return np.array(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=60.0)
    options = args.parse_args(argv)
    times = item_times_ms(options.seconds)
    p50, p99 = np.percentile(times, [50, 99])
    results = {
        "items": len(times),
        "median_ms": float(p50),
        "p99_ms": float(p99),
        "max_ms": float(times.max()),
        "over_100_ms": int((times > 100).sum()),
        "over_500_ms": int((times > 500).sum()),
        # Work done over wall time: the share of the run this thread actually computed.
        "share_computing": float(len(times) * p50 / 1e3 / options.seconds),
    }
    settings = {"seconds": options.seconds, "matrix": MATRIX, "rounds": ROUNDS}
    report("stalls", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
