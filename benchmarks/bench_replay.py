"""Benchmark 3, replay throughput: `forecaster replay` of one tick file, by number of series.

Each run is the real command in its own process with a promoted 2-layer LSTM (32 units);
the rate is the one `replay` logs (ticks over the time from its first poll to its last
flush, start-up excluded), and so is its rate per CPU second over the same span (the
share of a core the replay got is the ratio of the two). Wall time of the whole process
is reported next to them.

The decay trigger is off (``FORECASTER_DECAY_WINDOW=0``): the model's weights are random,
so it would call for a retraining within the first batches of every replay, which a
replay runs inline: once the file has fed enough history, a fit of many seconds inside
the timed span (a fit refused for too little history costs nothing since TensorFlow is
imported only for a fit that runs). ``max_series`` is raised to the number of series, so
that every tick is stepped (the default 50,000 would reject half of 100,000 series).

    python benchmarks/bench_replay.py --ticks 1000000 --series 10 100 1000 10000 100000 \\
        --json benchmarks/results/replay.json
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    NO_DECAY,
    forecaster_command,
    median,
    model_dir,
    parser,
    report,
    run_logged,
    tick_file,
)

from forecaster.config import Settings

RATE_LINE = re.compile(
    r"replayed (\d+) ticks .* in ([0-9.]+) s \((\d+) ticks/s; ([0-9.]+) s of CPU, (\d+) ticks per"
)
GOAL_TICKS_PER_S = {10: 100_000, 1000: 300_000, 100_000: 100_000}  # by series (issue 22)


def replay_once(
    ticks: Path, series: int, models: Path, workdir: Path, timeout: float
) -> dict[str, float]:
    log = workdir / "replay.log"
    started = time.perf_counter()
    held = {"FORECASTER_MAX_SERIES": str(max(series, Settings.max_series))}  # every series
    run_logged(
        forecaster_command("replay", str(ticks), "--out", str(workdir / "forecasts.jsonl"),
                           "--rejects", str(workdir / "rejects.jsonl"), "--model-dir", str(models)),
        log, timeout, env=NO_DECAY | held,
    )  # fmt: skip
    wall = time.perf_counter() - started
    found = RATE_LINE.search(log.read_text())
    if found is None:
        raise RuntimeError(f"no rate line in {log}")
    return {"ticks_per_s": float(found.group(3)), "seconds": float(found.group(2)),
            "ticks_per_cpu_s": float(found.group(5)), "cpu_s": float(found.group(4)),
            "wall_s": wall}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--ticks", type=int, default=1_000_000)
    args.add_argument("--series", type=int, nargs="+", default=[10, 100, 1000, 10_000, 100_000])
    args.add_argument("--timeout", type=float, default=3600.0)
    options = args.parse_args(argv)
    workdir = options.workdir / "replay"
    workdir.mkdir(parents=True, exist_ok=True)
    models = model_dir(workdir / "models")
    results: dict[str, Any] = {}
    for series in options.series:
        ticks = tick_file(workdir / f"ticks-{options.ticks}-{series}.csv", options.ticks, series)
        runs = [
            replay_once(ticks, series, models, workdir, options.timeout)
            for _ in range(options.repeats)
        ]
        rate = median(r["ticks_per_s"] for r in runs)
        cpu_rate = median(r["ticks_per_cpu_s"] for r in runs)
        goal = GOAL_TICKS_PER_S.get(series)
        results[str(series)] = {"runs": runs, "median_ticks_per_s": rate,
                                "median_ticks_per_cpu_s": cpu_rate,
                                "ratio_to_goal": rate / goal if goal else None}  # fmt: skip
    settings = {"ticks": options.ticks, "series": options.series, "repeats": options.repeats,
                "model": "lstm 2x32",
                "goal_ticks_per_s_by_series": GOAL_TICKS_PER_S}  # fmt: skip
    report("replay", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
