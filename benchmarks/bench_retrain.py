"""Benchmark 5, retraining interference: the data path while a model trains beside it.

One process replays a tick file (looped) through the service's own Pipeline and engine
(2-layer LSTM, 32 units) into JSON lines, batch by batch: first until every series'
history ring holds ``--history`` steps (what the retraining trains on; a warm-up of fixed
duration would leave the rings too short on a slow machine), then in steady state, then
while the service's Retrainer trains a candidate in its child process (and swaps it in
if it passes the gate). Per phase: ticks per second and the p99 of batch latency (batch
arrival to its sink's flush, which is the service's tick_to_forecast metric).

    python benchmarks/bench_retrain.py --seconds 30 --json benchmarks/results/retrain.json
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import SERVING_SPEC, parser, ratio, report, tick_file

from forecaster.core.engine import Engine, EngineParams
from forecaster.io.files import CsvSource, JsonLinesSink
from forecaster.ops.metrics import RETRAIN_OUTCOMES, Metrics
from forecaster.pipeline import Pipeline
from forecaster.retraining.coordinator import Retrainer, RetrainPolicy
from forecaster.retraining.feed import StepFeed
from forecaster.retraining.trainer import Trainer
from forecaster.retraining.window import WindowSpec
from forecaster.runtime import serving_runtime
from tests.support.models import random_stepper


def retraining_engine(epochs: int, sequence_length: int, timeout_s: float, metrics: Metrics
                       ) -> tuple[Engine, Retrainer]:  # fmt: skip
    """The engine and the service's Retrainer, wired as build_engine wires them; a run
    starts only when requested: the pipeline launches it at its next batch boundary in a
    child process (niced, TensorFlow bounded to one thread) and swaps the model in,
    re-warming every series, when it is done."""
    params = EngineParams()
    policy = RetrainPolicy(window=WindowSpec(ticks=params.ring_length), timeout_s=timeout_s)
    feed = StepFeed(policy.bootstrap_steps, first_model=False)
    engine = Engine(params, random_stepper(SERVING_SPEC, seed=1), recorder=feed)
    trainer = Trainer(SERVING_SPEC, params.features, sequence_length=sequence_length,
                      epochs=epochs, threads=1)  # fmt: skip
    retrainer = Retrainer(engine, feed, trainer.named_fit(), policy, params.features,
                          metrics=metrics)  # fmt: skip
    return engine, retrainer


def retrain_runs(metrics: Metrics) -> dict[str, Any]:
    """What the retraining came to, from the service's metrics."""
    registry = metrics.registry
    outcomes = {outcome: registry.get_sample_value("forecaster_retrains_total",
                                                   {"outcome": outcome})
                for outcome in RETRAIN_OUTCOMES}  # fmt: skip
    seconds = registry.get_sample_value("forecaster_retrain_duration_seconds_sum")
    return {"retrain_outcomes": {k: int(v or 0) for k, v in outcomes.items() if v},
            "retrain_seconds": round(seconds or 0.0, 1)}  # fmt: skip


def run_phase(pipeline: Pipeline, keep_going: Any) -> dict[str, float]:
    """Step batches while ``keep_going()``; ticks/s and batch latency percentiles."""
    latencies, ticks, started = [], 0, time.perf_counter()
    while keep_going():
        before = pipeline.totals.received
        arrived = time.perf_counter()
        pipeline.step()
        latencies.append((time.perf_counter() - arrived) * 1e3)
        ticks += pipeline.totals.received - before
    seconds = time.perf_counter() - started
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (np.nan, np.nan)
    return {"ticks": ticks, "seconds": seconds, "ticks_per_s": ticks / max(seconds, 1e-9),
            "batches": len(latencies), "p50_ms": float(p50), "p99_ms": float(p99)}  # fmt: skip


def least_history(engine: Engine) -> int:
    """The fewest steps any series has in its history ring (0 before the first tick)."""
    counts = engine.table.ring_count[engine.table.active_slots()]
    return int(counts.min()) if len(counts) else 0


def for_seconds(seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() < deadline


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=30.0, help="steady phase length")
    args.add_argument("--max-retrain-seconds", type=float, default=600.0,
                      help="the retraining's timeout: a longer run is stopped, failed")  # fmt: skip
    args.add_argument("--series", type=int, default=1000)
    args.add_argument("--batch", type=int, default=1000)
    args.add_argument("--epochs", type=int, default=2)
    args.add_argument("--window", type=int, default=32)
    args.add_argument("--history", type=int, default=160,
                      help="steps per series in the rings before the steady phase")  # fmt: skip
    options = args.parse_args(argv)
    workdir = options.workdir / "retrain"
    ticks = tick_file(workdir / f"ticks-{options.series}.csv", 100 * options.series,
                      options.series)  # fmt: skip
    metrics = Metrics()
    engine, retrainer = retraining_engine(options.epochs, options.window,
                                          options.max_retrain_seconds, metrics)  # fmt: skip
    out = (workdir / "forecasts.jsonl").open("wb")
    sink = JsonLinesSink(out, (workdir / "rejects.jsonl").open("wb"))
    source = CsvSource(ticks, options.batch, loop=True)
    pipeline = Pipeline(source, engine, sink, metrics, updates=retrainer)
    # One BLAS thread, as the service runs.
    with serving_runtime(), contextlib.closing(sink):
        warm = run_phase(pipeline, lambda: least_history(engine) < options.history)
        steady = run_phase(pipeline, for_seconds(options.seconds))
        retrainer.request()
        pipeline.step()  # the boundary at which the run starts
        during = run_phase(pipeline, lambda: retrainer.running)
        retrainer.stop()
    results = {"warm": warm, "steady": steady, "retraining": during,
               **retrain_runs(metrics),
               "throughput_ratio": ratio(during["ticks_per_s"], steady["ticks_per_s"]),
               "p99_ratio": ratio(during["p99_ms"], steady["p99_ms"])}  # fmt: skip
    settings = {"series": options.series, "batch": options.batch, "epochs": options.epochs,
                "window": options.window, "history": options.history, "model": "lstm 2x32",
                "note": "one repeat: the retraining phase is as long as the training"}  # fmt: skip
    report("retrain", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
