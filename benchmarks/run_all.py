"""Every benchmark, one table: each figure next to its goal and whether it was met.

    python benchmarks/run_all.py --quick    # small sizes, within 10 minutes
    python benchmarks/run_all.py            # the full sizes of benchmarks/README.md

Each benchmark runs in a process of its own (``--child NAME``: a fresh interpreter, so
that one's imports, threads and memory are not another's), through its own functions:
the ``main`` of the script with the sizes below, or for ``intervals`` and ``soak`` the
functions their ``main`` calls. What a benchmark prints goes to ``NAME.log`` under
``--workdir``/run_all; a benchmark that fails or runs out of its time shows as such in
the table and the others go on. The goals are issue 22's and benchmarks/README.md's.
The Kafka ones start a Tansu broker as they do on their own; ``latency`` offers each client
half the rate ``kafka`` measured for it just before (quick: that point only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, child_env

Results = dict[str, Any]
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    value: float | None  # None: not measured (the benchmark failed, or not at this size)
    goal: str = ""  # "" for a figure shown for what it explains
    met: bool | None = None


def at_least(benchmark: str, figure: str, value: float | None, goal: float) -> Row:
    met = None if value is None else value >= goal
    return Row(benchmark, figure, value, f">= {goal:,g}", met)


def at_most(benchmark: str, figure: str, value: float | None, goal: float) -> Row:
    met = None if value is None else value <= goal
    return Row(benchmark, figure, value, f"<= {goal:,g}", met)


def sizes(quick: bool, small: list[str], full: list[str], workdir: Path) -> list[str]:
    return [*(small if quick else full), "--workdir", str(workdir)]


# What each child measures: (quick, workdir) -> the benchmark's results.


def measure_stalls(quick: bool, workdir: Path) -> Results:
    import stalls

    return stalls.main(sizes(quick, ["--seconds", "5"], ["--seconds", "60"], workdir))


def measure_step(quick: bool, workdir: Path) -> Results:
    import bench_step

    small = ["--series", "1", "1000", "--tutorial-ticks", "3"]
    return bench_step.main(sizes(quick, small, [], workdir))


def measure_replay(quick: bool, workdir: Path) -> Results:
    import bench_replay

    small = ["--ticks", "100000", "--series", "10", "1000", "--repeats", "1"]  # 1 tick per
    # series at 100,000 series would time creating series, not stepping them: not in quick
    full = ["--ticks", "1000000", "--series", "10", "1000", "100000", "--repeats", "1"]
    return bench_replay.main(sizes(quick, small, full, workdir))


def measure_kafka(quick: bool, workdir: Path) -> Results:
    import bench_kafka

    # The full sizes, one repeat: confluent drained 20,000 ticks in a fraction of a second,
    # within a few of the rate watch's 0.25 s steps, and its quick ratios were noise.
    small = ["--repeats", "1"]
    return bench_kafka.main([*sizes(quick, small, [], workdir), "--json", str(kafka_json(workdir))])


def kafka_json(workdir: Path) -> Path:
    return workdir / "run_all" / "kafka-report.json"  # the report bench_latency reads


def measure_latency(quick: bool, workdir: Path) -> Results:
    import bench_latency

    small = ["--seconds", "10", "--series", "100", "--partitions", "2", "--fraction", "0.5"]
    argv = [*sizes(quick, small, [], workdir), "--max-json", str(kafka_json(workdir))]
    return bench_latency.main(argv)


def measure_retrain(quick: bool, workdir: Path) -> Results:
    import bench_retrain

    small = ["--seconds", "5", "--series", "100", "--batch", "500", "--epochs", "1",
             "--max-retrain-seconds", "240"]  # fmt: skip
    return bench_retrain.main(
        [*sizes(quick, small, ["--seconds", "30"], workdir), "--repeats", "1"]
    )


def measure_memory(quick: bool, workdir: Path) -> Results:
    import bench_memory

    small = ["--series", "100000", "--repeats", "1"]  # the goal's size: ~30 s
    return bench_memory.main(sizes(quick, small, ["--series", "100000"], workdir))


def measure_swap(quick: bool, workdir: Path) -> Results:
    import bench_swap

    small = ["--series", "10000", "--seconds", "2"]  # the default ring; 100,000 series: ~4 min
    return bench_swap.main(sizes(quick, small, [], workdir))


def measure_intervals(quick: bool, workdir: Path) -> Results:
    """The engine's own intervals (its default method and coverage) around naive
    forecasts of the sample data, as intervals.py scores each setting."""
    import intervals
    import pandas as pd

    from forecaster.core.intervals import IntervalParams

    params = IntervalParams()
    ticks = pd.read_csv(intervals.SAMPLE / "ticks.csv", dtype=str, keep_default_na=False)
    return {"nominal": params.coverage, **intervals.figures(intervals.scored(ticks, params),
                                                           params.coverage)}  # fmt: skip


def measure_soak(quick: bool, workdir: Path) -> Results:
    import soak

    ticks, series = (500_000, 1_000) if quick else (1_000_000, 10_000)  # RSS every 100,000
    steady = soak.run(ticks, series, 0.0, churn=False)
    churn = soak.run(ticks, series, 30.0, churn=True)
    return {"steady": steady, "churn": churn}


# The figures of each benchmark's results.


def rows_stalls(r: Results) -> list[Row]:
    return [Row("stalls", "busy thread, p99 of a ~5 ms item (ms)", r["p99_ms"]),
            Row("stalls", "share of the time computing", r["share_computing"])]  # fmt: skip


def rows_step(r: Results) -> list[Row]:
    by = r["by_series"]
    one, many = by.get("1", {}), by.get("1000", {})
    return [
        at_most("step", "one-tick batch (µs)", one.get("engine_us_per_tick"), 60),
        at_least(
            "step",
            "tutorial predict over the one-tick batch (x)",
            one.get("tutorial_over_engine"),
            10_000,
        ),
        at_most(
            "step",
            "bare stepper at 1,000 series (µs per series-step)",
            many.get("stepper_us_per_series_step"),
            2,
        ),
    ]


def rows_replay(r: Results) -> list[Row]:
    from bench_replay import GOAL_TICKS_PER_S

    def rate(series: int) -> float | None:
        return r[str(series)]["median_ticks_per_s"] if str(series) in r else None

    return [
        at_least("replay", f"ticks/s at {series:,} series" + ("" if rate(series) else
                 " (full sizes only)"), rate(series), goal)
        for series, goal in GOAL_TICKS_PER_S.items()
    ]  # fmt: skip


KAFKA_CEILING_GOALS = {"kafka-python": 0.9, "confluent": 0.6}  # service over its own pipe


def rows_kafka(r: Results) -> list[Row]:
    rows = []
    for client, goal in KAFKA_CEILING_GOALS.items():
        if f"{client}/ceiling_ratio" not in r:
            continue
        rows += [Row("kafka", f"{client} pipe (msg/s)", r[f"{client}/pipe_msg_per_s"]),
                 Row("kafka", f"{client} service (msg/s)", r[f"{client}/service_msg_per_s"]),
                 Row("kafka", f"{client} service, CPU µs per message",
                     r[f"{client}/service_cpu_us_per_msg"]),
                 at_least("kafka", f"{client} service over its pipe",
                          r[f"{client}/ceiling_ratio"], goal)]  # fmt: skip
    if "confluent_over_kafka_python_service" in r:
        rows.append(at_least("kafka", "confluent service over kafka-python's",
                             r["confluent_over_kafka_python_service"], 3.0))  # fmt: skip
    return rows


def rows_latency(r: Results) -> list[Row]:
    from bench_latency import GOAL_FRACTION, GOAL_P99_MS

    rows = []
    for point in r["points"]:
        if point["fraction"] != GOAL_FRACTION:
            continue
        client, produced = point["client"], point["to_producer_timestamp"]
        rows += [Row("latency", f"{client}: offered at half its max (ticks/s)",
                     point["offered_per_s"]),
                 Row("latency", f"{client}: tick to forecast, p50 (ms)", produced.get("p50_ms")),
                 at_most("latency", f"{client}: tick to forecast, p99 (ms)",
                         produced.get("p99_ms"), GOAL_P99_MS)]  # fmt: skip
    return rows


def rows_retrain(r: Results) -> list[Row]:
    return [at_least("retrain", "ticks/s while retraining over steady", r["throughput_ratio"],
                     0.7),
            at_most("retrain", "batch p99 while retraining over steady", r["p99_ratio"],
                    2.0)]  # fmt: skip


def rows_memory(r: Results) -> list[Row]:
    from bench_memory import GOAL_BYTES_PER_SERIES, GOAL_STARTUP_S

    series = int(r["memory_runs"][0]["series"])
    return [at_most("memory", f"resident bytes per series at {series:,} series",
                    r["rss_bytes_per_series"], GOAL_BYTES_PER_SERIES),
            at_most("memory", "start-up to the first forecast (s)",
                    r["startup_to_first_forecast_s"], GOAL_STARTUP_S)]  # fmt: skip


def rows_swap(r: Results) -> list[Row]:
    from bench_swap import GOAL_PAUSE_MS

    return [at_most("swap", "longest gap between two polls during a swap (ms)",
                    r["longest_gap_during_ms"], GOAL_PAUSE_MS),
            Row("swap", "longest gap before the swap (ms)", r["before"]["longest_gap_ms"]),
            Row("swap", "swap re-warmed off the loop, start to install (s)", r["rewarm_s"]),
            Row("swap", "a synchronous swap's pause (ms)", r["sync_swap_pause_ms"])]  # fmt: skip


def rows_intervals(r: Results) -> list[Row]:
    return [Row("intervals", f"coverage at nominal {r['nominal']}, sample data", r["coverage"]),
            Row("intervals", "mean width (bp of price)", r["width_bp"])]  # fmt: skip


def rows_soak(r: Results) -> list[Row]:
    steady, churn = r["steady"], r["churn"]
    growth = steady["rss_mb_after_warmup_max"] / steady["rss_mb_after_warmup_min"]
    return [at_most("soak", "steady: largest over smallest RSS after warm-up", growth, 1.05),
            Row("soak", f"churn: series live at the end of {churn['ticks']:,} new names",
                churn["live_series_end"])]  # fmt: skip


@dataclass(frozen=True)
class Benchmark:
    measure: Callable[[bool, Path], Results]
    rows: Callable[[Results], list[Row]]
    quick_timeout_s: float  # the quick run's budget; the full sizes get 10x


BENCHMARKS = {
    "stalls": Benchmark(measure_stalls, rows_stalls, 60),
    "step": Benchmark(measure_step, rows_step, 120),
    "replay": Benchmark(measure_replay, rows_replay, 120),
    "kafka": Benchmark(measure_kafka, rows_kafka, 180),
    "latency": Benchmark(measure_latency, rows_latency, 300),
    "retrain": Benchmark(measure_retrain, rows_retrain, 300),
    "memory": Benchmark(measure_memory, rows_memory, 120),
    "swap": Benchmark(measure_swap, rows_swap, 180),
    "intervals": Benchmark(measure_intervals, rows_intervals, 60),
    "soak": Benchmark(measure_soak, rows_soak, 90),
}


def run_child(name: str, quick: bool, workdir: Path) -> tuple[Results | None, str]:
    """One benchmark in its own process; its results, or None and why."""
    folder = workdir / "run_all"
    folder.mkdir(parents=True, exist_ok=True)
    out, log = folder / f"{name}.json", folder / f"{name}.log"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", name, "--workdir", str(workdir)]
    timeout = BENCHMARKS[name].quick_timeout_s * (1 if quick else 10)
    with log.open("w") as output:
        # A session of its own: on a timeout, the brokers and services it started go too.
        process = subprocess.Popen([*command, *(["--quick"] if quick else [])], stdout=output,
                                 stderr=subprocess.STDOUT, env=child_env(), cwd=REPO,
                                 start_new_session=True)  # fmt: skip
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_group(process)
            return None, f"not within {timeout:.0f} s"
    if code != 0 or not out.exists():
        return None, f"failed (exit {code}; see {log})"
    results: Results = json.loads(out.read_text())
    return results, ""


def stop_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to every process of the child's group, SIGKILL to what is left after 10 s."""
    for signum, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(wait)
            return


def child(name: str, quick: bool, workdir: Path) -> None:
    """In the child: measure, the benchmark's own output to the log, results to JSON."""
    with redirect_stdout(sys.stderr):
        results = BENCHMARKS[name].measure(quick, workdir)
    (workdir / "run_all" / f"{name}.json").write_text(json.dumps(results, default=str))


def table(rows: list[Row]) -> str:
    def shown(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4f}"

    lines = [("benchmark", "figure", "value", "goal", "met")]
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        lines.append((row.benchmark, row.figure, shown(row.value), row.goal or "-", met))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
                     for line in lines)  # fmt: skip


def main(argv: list[str] | None = None) -> list[Row]:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true", help="small sizes, within 10 minutes")
    args.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="these benchmarks")
    args.add_argument("--workdir", type=Path, default=Path("/tmp/forecaster-bench"))
    args.add_argument("--json", type=Path, help="write the table's rows to this JSON file")
    args.add_argument("--child", choices=list(BENCHMARKS), help=argparse.SUPPRESS)
    options = args.parse_args(argv)
    if options.child:
        child(options.child, options.quick, options.workdir)
        return []
    rows: list[Row] = []
    started = time.monotonic()
    for name in options.only or list(BENCHMARKS):
        began = time.monotonic()
        results, failure = run_child(name, options.quick, options.workdir)
        if results is None:
            rows.append(Row(name, failure, None))
        else:
            rows.extend(BENCHMARKS[name].rows(results))
        print(f"{name}: {time.monotonic() - began:.0f} s {failure}", file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\n{len(rows)} figures in {time.monotonic() - started:.0f} s "
          f"({'quick' if options.quick else 'full'} sizes)")  # fmt: skip
    if options.json is not None:
        options.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return rows


if __name__ == "__main__":
    main()
