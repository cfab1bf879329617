"""Benchmark 6, memory and start-up: resident bytes per active series, time to first forecast.

Memory: a fresh process builds the service's engine (default settings, 2-layer LSTM of
32 units; ``max_series`` raised to ``--series`` where that is more than its 50,000),
feeds every one of ``--series`` series a few ticks in batches of ``max_batch``, as the
service steps them, and fills every history ring, as a series in steady state has it;
resident set growth over the series count is the cost per series (state, statistics,
history ring, the name, and the engine's reused batch memory over all of them). The bytes of the
per-slot arrays per series, spare capacity included, are reported next to it.
Start-up: `forecaster run` on a small tick file with a saved model in --model-dir,
from process start to its first forecast line on disk.

    python benchmarks/bench_memory.py --series 100000 --json benchmarks/results/memory.json
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import (
    REPO,
    SERVING_SPEC,
    START_NS,
    child_env,
    forecaster_command,
    median,
    model_dir,
    parser,
    report,
    tick_file,
    wait_for,
)
from kafka_rig import process

if TYPE_CHECKING:
    from forecaster.core.table import SeriesTable
    from forecaster.core.ticks import TickColumns

TICKS_PER_SERIES = 3
GOAL_BYTES_PER_SERIES = 4096
GOAL_STARTUP_S = 10.0


def resident_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def measure_memory(series: int) -> dict[str, float]:
    """Run in a child process: RSS growth per series once ``series`` series are active."""
    from forecaster.config import Settings
    from forecaster.core.engine import Engine
    from forecaster.core.table import SLOT_ARRAYS
    from forecaster.params import engine_params
    from forecaster.runtime import keep_freed_memory
    from tests.support.models import random_stepper

    keep_freed_memory()  # as the service runs its engine (forecaster/runtime.py)
    settings = replace(Settings(), max_series=max(series, Settings.max_series))
    engine = Engine(engine_params(settings), random_stepper(SERVING_SPEC, seed=1))
    names = [f"S{i:06d}" for i in range(series)]
    loaded = resident_bytes()
    engine.load_kernels()  # as the service does: code, not series
    before = resident_bytes()
    for tick, first in itertools.product(range(TICKS_PER_SERIES),
                                         range(0, series, settings.max_batch)):  # fmt: skip
        batch = names[first : first + settings.max_batch]
        engine.process(ticks_of(batch, tick))
    engine.commit()
    del names
    fill_rings(engine.table)
    grown = resident_bytes() - before
    table = engine.table
    slot_bytes = sum(getattr(table, name).nbytes for name in SLOT_ARRAYS)
    return {"series": len(table), "rss_bytes_per_series": grown / len(table),
            "kernels_loaded_bytes": before - loaded,
            "array_bytes_per_series": slot_bytes / len(table), "capacity": table.capacity,
            "ring_length": table.ring_length}  # fmt: skip


def ticks_of(names: list[str], tick: int) -> TickColumns:
    """One tick of each of ``names``, the ``tick``-th."""
    from forecaster.core.ticks import TickColumns

    return TickColumns(
        position=np.arange(len(names)), series=names,
        ts=np.full(len(names), START_NS + tick * 10**9, np.int64),
        price=np.full(len(names), 50.0 + tick), volume=np.full(len(names), np.nan),
        partition=np.zeros(len(names), np.int32),
    )  # fmt: skip


def fill_rings(table: SeriesTable) -> None:
    """Append ``ring_length`` steps to every active series' ring, as warm ticks would: a
    series in steady state has its whole ring written (spare capacity is never touched)."""
    slots = table.active_slots()
    values = np.ones(len(slots))
    for step in range(table.ring_length):
        ts = np.full(len(slots), START_NS + (TICKS_PER_SERIES + step) * 10**9)
        table.append_history(slots, values, values, ts)


def memory_in_child(series: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(series)], capture_output=True,
        text=True, env=child_env(), cwd=REPO, check=True, timeout=3600,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def startup_seconds(workdir: Path, models: Path, timeout: float) -> float:
    """Seconds from starting `forecaster run` to its first forecast line on disk."""
    ticks = tick_file(workdir / "startup.csv", 200, 10)
    out = workdir / "startup-forecasts.jsonl"
    out.unlink(missing_ok=True)
    command = forecaster_command(
        "run", "--input", str(ticks), "--rate", "0", "--forecasts-out", str(out),
        "--model-dir", str(models), "--metrics-port", "0",
    )  # fmt: skip
    started = time.perf_counter()
    with process(command, workdir / "startup.log", child_env()):
        wait_for(lambda: out.exists() and out.stat().st_size > 0, timeout, "first forecast", 0.01)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        print(json.dumps(measure_memory(int(sys.argv[2]))))
        raise SystemExit(0)
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--series", type=int, default=100_000)
    args.add_argument("--timeout", type=float, default=600.0)
    options = args.parse_args(argv)
    workdir = options.workdir / "memory"
    workdir.mkdir(parents=True, exist_ok=True)
    models = model_dir(workdir / "models")
    memory = [memory_in_child(options.series) for _ in range(options.repeats)]
    startup = [startup_seconds(workdir, models, options.timeout) for _ in range(options.repeats)]
    results = {
        "memory_runs": memory,
        "rss_bytes_per_series": median(m["rss_bytes_per_series"] for m in memory),
        "array_bytes_per_series": median(m["array_bytes_per_series"] for m in memory),
        "startup_runs_s": startup,
        "startup_to_first_forecast_s": median(startup),
        "goals": {"bytes_per_series": GOAL_BYTES_PER_SERIES, "startup_s": GOAL_STARTUP_S},
    }
    settings = {"series": options.series, "ticks_per_series": TICKS_PER_SERIES,
                "repeats": options.repeats, "model": "lstm 2x32",
                "engine": "Settings() defaults"}  # fmt: skip
    report("memory", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
