"""The engine's CPU time per tick, this tree against another commit's, side by side.

Each run is a child process stepping 1,000 warm series (one tick each per batch, a
2-layer LSTM of random weights) through the tree's own ``Engine`` as that tree's service
runs it: its ``forecaster.runtime.serving_runtime`` where it has one, else one BLAS thread.
Runs of the two trees alternate, so that both see the same machine; each run reports the
fastest and the median batch's CPU time per tick (``time.process_time``, which another
process's load touches less than wall time does). ``--same-malloc`` gives the other tree
this tree's malloc thresholds too (through glibc's environment variables), so that the
difference left is the code's own.

    python benchmarks/engine_against.py --commit 4aab4a2 --runs 3
    python benchmarks/engine_against.py --commit 4aab4a2 --runs 3 --same-malloc
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, child_env, median, parser, ratio, report

from forecaster.runtime import MMAP_THRESHOLD, TRIM_THRESHOLD

# Run in the child, on the tree under test: only APIs both trees have.
CHILD = """
import json, sys, time
# Only the tree under test: an editable install's finder would lend it the installed
# tree's modules that it lacks (forecaster.runtime, say).
sys.meta_path = [f for f in sys.meta_path if not f.__module__.startswith("__editable__")]
sys.path.insert(0, "benchmarks")
import numpy as np
from bench_step import SERVING_SPEC, Engine, EngineParams, one_tick_each, random_stepper
try:
    from forecaster.runtime import serving_runtime
except ImportError:  # a tree from before forecaster.runtime: one BLAS thread, as it served
    from threadpoolctl import threadpool_limits
    serving_runtime = lambda: threadpool_limits(1, user_api="blas")
series, batches = int(sys.argv[1]), int(sys.argv[2])
with serving_runtime():
    params = EngineParams(max_series=0)
    engine = Engine(params, random_stepper(SERVING_SPEC, seed=1))
    names, rng = [f"S{i:06d}" for i in range(series)], np.random.default_rng(0)
    warm = params.features.min_history + 2
    for tick in range(warm):
        engine.process(one_tick_each(names, tick, rng))
    times = []
    for batch in [one_tick_each(names, warm + k, rng) for k in range(batches)]:
        started = time.process_time()
        engine.process(batch)
        engine.commit()
        times.append((time.process_time() - started) / series * 1e6)
print(json.dumps({"fastest": min(times), "median": float(np.median(times))}))
"""
GLIBC_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
}


def tree_of(commit: str, into: Path) -> Path:
    """The files of ``commit`` in a folder of their own (``git archive``)."""
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def run(tree: Path, series: int, batches: int, env: dict[str, str]) -> dict[str, float]:
    environment = child_env(env | {"PYTHONPATH": str(tree)})
    done = subprocess.run([sys.executable, "-c", CHILD, str(series), str(batches)], cwd=tree,
                          env=environment, capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"the run in {tree} failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--commit", default="4aab4a2", help="the other tree (default: before #20)")
    args.add_argument("--series", type=int, default=1000)
    args.add_argument("--batches", type=int, default=60)
    args.add_argument("--runs", type=int, default=3, help="alternating runs of each tree")
    args.add_argument("--same-malloc", action="store_true")
    options = args.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"this": [], "other": []}
    with tempfile.TemporaryDirectory() as scratch:
        other = tree_of(options.commit, Path(scratch))
        other_env = GLIBC_MALLOC_ENV if options.same_malloc else {}
        for _ in range(options.runs):
            runs["other"].append(run(other, options.series, options.batches, other_env))
            runs["this"].append(run(REPO, options.series, options.batches, {}))
    fastest = {tree: min(r["fastest"] for r in by_run) for tree, by_run in runs.items()}
    medians = {tree: median(r["median"] for r in by_run) for tree, by_run in runs.items()}
    results = {
        "runs": runs,
        "fastest_us_per_tick": fastest,
        "median_us_per_tick": medians,
        "this_over_other_fastest": ratio(fastest["this"], fastest["other"]),
        "this_over_other_median": ratio(medians["this"], medians["other"]),
    }
    settings = {"commit": options.commit, "series": options.series, "batches": options.batches,
                "runs": options.runs, "same_malloc": options.same_malloc}  # fmt: skip
    report("engine_against", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
