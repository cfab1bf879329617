"""What every benchmark shares: the machine header, medians, tick files, models, JSON output.

Benchmarks run from the repository root (``python benchmarks/bench_replay.py --help``);
the repository root is put on ``sys.path`` so that they reuse ``tests/support`` (the
Tansu broker launcher, random-weight models) instead of copies of it.

>>> median([3.0, 1.0, 2.0])
2.0
>>> ratio(10.0, 4.0)
2.5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from forecaster.core.features import FeatureParams  # noqa: E402
from forecaster.model.spec import ModelSpec  # noqa: E402
from forecaster.retraining.registry import Registry  # noqa: E402
from tests.support.models import random_stepper  # noqa: E402

START_NS = 1_767_571_200 * 10**9  # 2026-01-05T00:00:00Z
SERVING_SPEC = ModelSpec(cell="lstm", layers=2, units=32)
# One BLAS thread: on 2 shared cores OpenBLAS's spinning worker threads cost ~4x CPU time.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
# The decay trigger off: the benchmarks' models have random weights, so it would call for a
# retraining within seconds of every run (a training child's TensorFlow start-up cost a
# latency run's 10 % point a p99 of 132 ms where the pipe's was 27).
NO_DECAY = {"FORECASTER_DECAY_WINDOW": "0"}


def parser(description: str) -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--json", type=Path, help="write the results to this JSON file")
    args.add_argument("--repeats", type=int, default=3, help="repeats; medians are reported")
    args.add_argument("--workdir", type=Path, default=Path("/tmp/forecaster-bench"))
    return args


def machine() -> dict[str, Any]:
    """What the figures were measured on, including how busy the machine was."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average": os.getloadavg(),
        # Share of time runnable tasks waited for a CPU (Linux PSI), over 10, 60, 300 s.
        "cpu_pressure": {k: v for k, v in cpu_pressure().items() if k.startswith("avg")},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cpu_pressure() -> dict[str, float]:
    """``/proc/pressure/cpu``'s "some" line: the averages (percent of the time some runnable
    task waited for a CPU, over 10, 60 and 300 s) and ``total``, µs of such waiting since
    boot; e.g. {"avg10": 28.8, ..., "total": 9315949510.0}. Empty where Linux has no PSI."""
    some = next((line.split()[1:] for line in _lines("/proc/pressure/cpu")
                 if line.startswith("some")), [])  # fmt: skip
    return {key: float(value) for key, value in (field.split("=") for field in some)}


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def repeat(times: int, measure: Callable[[], float]) -> list[float]:
    return [measure() for _ in range(times)]


def report(name: str, settings: dict[str, Any], results: dict[str, Any], out: Path | None) -> None:
    """Print machine, settings and results; write them as JSON to ``out`` if given."""
    document = {"benchmark": name, "machine": machine(), "settings": settings, "results": results}
    print(json.dumps(document, indent=2, default=str))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2, default=str))


def tick_file(path: Path, ticks: int, series: int, seed: int = 0) -> Path:
    """A CSV of ``ticks`` random-walk ticks over ``series`` series, spread evenly in time.

    Series take turns in a shuffled order, so every batch touches many of them.
    """
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    which = np.concatenate([rng.permutation(series) for _ in range(-(-ticks // series))])[:ticks]
    returns = rng.normal(0, 0.001, ticks)
    level = np.zeros(series)
    price = np.empty(ticks)
    for start in range(0, ticks, series):  # one tick per series per pass: no repeats inside
        rows = slice(start, min(start + series, ticks))
        level[which[rows]] += returns[rows]
        price[rows] = 50.0 * np.exp(level[which[rows]])
    ts_ms = START_NS // 10**6 + np.arange(ticks) * 3
    path.parent.mkdir(parents=True, exist_ok=True)
    names = np.char.add("S", np.char.zfill(which.astype(str), 6))
    with path.open("w") as out:
        out.write("series,ts,price\n")
        for chunk in range(0, ticks, 100_000):
            part = slice(chunk, chunk + 100_000)
            out.writelines(
                f"{n},{t},{p:.6f}\n"
                for n, t, p in zip(
                    names[part].tolist(),
                    ts_ms[part].tolist(),
                    price[part].tolist(),
                    strict=True,
                )
            )
    return path


def model_dir(path: Path, spec: ModelSpec = SERVING_SPEC) -> Path:
    """A registry with one promoted random-weight model of ``spec`` (serving needs no TF)."""
    registry = Registry(path)
    if registry.promoted() is None:
        stepper = random_stepper(spec, seed=1)
        registry.promote(registry.save(stepper, FeatureParams(), {"note": "benchmark model"}))
    return path


def forecaster_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "forecaster", *args]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **SINGLE_THREAD_ENV, **(extra or {})}


def run_logged(
    command: list[str], log: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to completion (``env`` added to its environment) with its output in
    ``log``; raise if it failed."""
    with log.open("w") as out:
        done = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=child_env(env), timeout=timeout,
            text=True, check=False, cwd=REPO,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited {done.returncode}; see {log}")
    return done


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(every)
