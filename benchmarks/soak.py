"""Soak: a long run of ticks over many series through the engine, resident memory sampled.

    python -m benchmarks.soak [--ticks 1000000] [--series 10000] [--ttl-s 0]

Phase 1 ("steady"): ``--series`` series tick round-robin; resident memory after the
warm-up (the first tenth) must stay flat. Phase 2 ("churn", with ``--ttl-s`` > 0): every
tick comes from a series name never seen before, and idle eviction keeps the table, and
so memory, bounded. Prints the figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from forecaster.config import Settings
from forecaster.core.engine import Engine
from forecaster.core.ticks import TickColumns
from forecaster.params import engine_params, model_spec
from tests.support.models import random_stepper

BATCH = 5000
NS = 1_000_000_000


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def batch(names: list[str], first_tick: int, rng: np.random.Generator) -> TickColumns:
    n = len(names)
    return TickColumns(
        position=np.arange(n),
        series=names,
        ts=(np.arange(first_tick, first_tick + n) * NS // 100).astype(np.int64),
        price=100.0 * np.exp(rng.normal(0, 0.001, n)),
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )


def run(ticks: int, series: int, ttl_s: float, churn: bool) -> dict[str, object]:
    settings = Settings(evict_ttl_s=ttl_s)  # the service's defaults otherwise
    engine = Engine(engine_params(settings), random_stepper(model_spec(settings)))
    rng, samples, evicted, started = np.random.default_rng(0), [], 0, time.perf_counter()
    for first in range(0, ticks, BATCH):
        ids = (
            range(first, first + BATCH)
            if churn
            else (i % series for i in range(first, first + BATCH))
        )
        engine.process(batch([f"S{i}" for i in ids], first, rng))
        evicted += engine.commit()
        if (first // BATCH) % 20 == 0:
            samples.append((first + BATCH, round(rss_mb(), 1), len(engine.table)))
    warm = [rss for done, rss, _ in samples if done > ticks // 10]
    return {
        "phase": "churn" if churn else "steady", "ticks": ticks,
        "series_seen": ticks if churn else series, "evicted": evicted,
        "live_series_end": len(engine.table), "capacity_end": engine.table.capacity,
        "rss_mb_after_warmup_min": min(warm), "rss_mb_after_warmup_max": max(warm),
        "ticks_per_s": round(ticks / (time.perf_counter() - started)), "samples": samples,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--ttl-s", type=float, default=30.0, help="churn phase eviction TTL")
    args = parser.parse_args()
    results = [run(args.ticks, args.series, 0.0, churn=False)]
    if args.ttl_s > 0:
        results.append(run(args.ticks, args.series, args.ttl_s, churn=True))
    for r in results:
        print(f"{r['phase']}: {r['ticks']} ticks, {r['series_seen']} series, "
              f"RSS after warm-up {r['rss_mb_after_warmup_min']}-"
              f"{r['rss_mb_after_warmup_max']} MB, "
              f"live at end {r['live_series_end']} (capacity {r['capacity_end']}), "
              f"evicted {r['evicted']}, {r['ticks_per_s']} ticks/s")  # fmt: skip
    print(json.dumps([{k: v for k, v in r.items() if k != "samples"} for r in results]))


if __name__ == "__main__":
    main()
