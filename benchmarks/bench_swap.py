"""Benchmark 7, model swaps under load: how long a swap holds the serving loop.

An engine serves a random 2x32 LSTM to ``--series`` warm series whose history rings
(``--ring``, the default 512) are full, in the loop shape of ``Pipeline.step``: take the
next batch of ``--batch`` ticks over random series ("poll"), step it, commit it, then
step 8. After ``--seconds`` of serving a new model is ready: step 8 begins its swap in
the background (``Engine.begin_swap``) and carries it on at each boundary until it is
installed (``continue_swap``), then the loop serves ``--seconds`` more. Printed: the
longest gap between two polls before, during and after the swap (a gap holds one
batch's own work), the longest time step 8 held the loop, the swap's total re-warm
time, and, at the same size, the pause of a synchronous ``swap_model``: the time the
loop would not poll at all.

    python benchmarks/bench_swap.py --series 100000 --json benchmarks/results/swap.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import SERVING_SPEC, START_NS, parser, report

from forecaster.config import Settings
from forecaster.core.engine import Engine, EngineParams
from forecaster.core.ticks import TickColumns
from forecaster.runtime import serving_runtime
from tests.support.models import random_stepper

GOAL_PAUSE_MS = 100.0  # issue 22: the longest gap between two polls during a swap
SECOND_NS = 10**9


class Stream:
    """Batches of ticks over ``names``, a millisecond apart, random walks in price."""

    def __init__(self, names: list[str], batch: int, start_ns: int) -> None:
        self.names, self.batch, self.next_ns = names, batch, start_ns
        self.rng = np.random.default_rng(1)
        self.polled = time.perf_counter()  # when the loop last polled

    def poll(self) -> TickColumns:
        picked = self.rng.choice(len(self.names), self.batch, replace=False)
        n, self.next_ns = self.batch, self.next_ns + self.batch * 1_000_000
        return TickColumns(
            position=np.arange(n, dtype=np.int64),
            series=[self.names[i] for i in picked.tolist()],
            ts=np.full(n, self.next_ns, np.int64),
            price=50.0 * np.exp(self.rng.normal(0, 0.001, n)),
            volume=np.full(n, np.nan),
            partition=np.zeros(n, np.int32),
        )


def warm_engine(series: int, ring: int) -> tuple[Engine, list[str]]:
    """An engine serving a random model to ``series`` series with full rings and warm
    statistics (rings filled directly: stepping 512 ticks of 100,000 series takes minutes)."""
    engine = Engine(EngineParams(ring_length=ring, max_series=0),
                    random_stepper(SERVING_SPEC, seed=1, version="old"))  # fmt: skip
    names = [f"S{i:06d}" for i in range(series)]
    slots = engine.table.slots_for(names)
    rng = np.random.default_rng(0)
    for step in range(ring):
        ts = np.full(series, START_NS + (step - ring) * SECOND_NS, np.int64)
        engine.table.append_history(slots, rng.normal(0, 1, series), rng.normal(0, 1, series), ts)
    stream = Stream(names, series, START_NS)
    for _ in range(engine.params.features.min_history + 2):
        engine.process(stream.poll())
    engine.commit()
    return engine, names


def serve(engine: Engine, stream: Stream, seconds: float, step8: Any = None) -> dict[str, Any]:
    """Serve batches in the loop shape of ``Pipeline.step`` for ``seconds`` (or, with
    ``step8``, until it returns True); the gaps between polls (the first: since the
    stream's last poll) and step 8's times."""
    gaps, pauses = [], []
    deadline = time.perf_counter() + seconds
    polled = stream.polled
    while True:
        batch = stream.poll()  # 1
        now = time.perf_counter()
        gaps.append(now - polled)
        polled = stream.polled = now
        engine.process(batch)  # 4
        engine.commit()  # 7
        if step8 is not None:
            began = time.perf_counter()
            done = step8()
            pauses.append(time.perf_counter() - began)
            if done:
                break
        elif now >= deadline:
            break
    ms = 1e3 * np.array(gaps)
    return {"batches": len(gaps), "longest_gap_ms": float(ms.max()),
            "median_gap_ms": float(np.median(ms)), "p99_gap_ms": float(np.percentile(ms, 99)),
            "gaps_over_100_ms": int((ms > GOAL_PAUSE_MS).sum()),
            "longest_step8_ms": 1e3 * max(pauses[:-1], default=0.0),  # handing chunks over
            "install_ms": 1e3 * pauses[-1] if pauses else None}  # fmt: skip


def measure(series: int, ring: int, batch: int, seconds: float) -> dict[str, Any]:
    engine, names = warm_engine(series, ring)
    stream = Stream(names, batch, int(stream_start(engine)))
    new = random_stepper(SERVING_SPEC, seed=2, version="new")
    stream.polled = time.perf_counter()
    before = serve(engine, stream, seconds)
    started = time.perf_counter()
    begun = engine.begin_swap(new)
    begin_ms = 1e3 * (time.perf_counter() - started)
    during = serve(engine, stream, 0, step8=lambda: engine.continue_swap() is not None)
    rewarm_s = time.perf_counter() - started
    assert begun is None and engine.model is new
    after = serve(engine, stream, seconds)
    started = time.perf_counter()
    engine.swap_model(random_stepper(SERVING_SPEC, seed=3, version="sync"))
    sync_ms = 1e3 * (time.perf_counter() - started)
    return {
        "before": before,
        "during": {**during, "begin_swap_ms": begin_ms},
        "after": after,  # its first gap holds the install
        "rewarm_s": rewarm_s,
        "sync_swap_pause_ms": sync_ms,
        "longest_gap_during_ms": max(during["longest_gap_ms"], after["longest_gap_ms"]),
    }


def stream_start(engine: Engine) -> int:
    """A time after every tick the engine has seen."""
    return int(engine.table.stats["last_ts"].max()) + SECOND_NS


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--series", type=int, default=100_000)
    args.add_argument("--ring", type=int, default=Settings.ring_length)
    args.add_argument("--batch", type=int, default=1_000, help="ticks per batch")
    args.add_argument("--seconds", type=float, default=5.0, help="of serving before and after")
    options = args.parse_args(argv)
    with serving_runtime():  # as the service runs
        results = measure(options.series, options.ring, options.batch, options.seconds)
    results["goal_longest_gap_ms"] = GOAL_PAUSE_MS
    settings = {"model": "lstm 2x32", "series": options.series, "ring": options.ring,
                "batch": options.batch, "seconds": options.seconds}  # fmt: skip
    report("swap", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
