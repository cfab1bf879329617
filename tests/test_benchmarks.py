"""The benchmark scripts still start: the suite runs none of them (their figures need a
machine to themselves), so an API they use that moved would go unseen until a release.
And the scheduling probe bench_latency names its limits with reads what the kernel does."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import ROOT

SCRIPTS = sorted(
    path
    for path in (ROOT / "benchmarks").glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()  # not the modules they share
)


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_a_benchmark_script_starts_and_says_how_to_run_it(script: Path) -> None:
    module = f"benchmarks.{script.stem}"  # soak.py runs as a module; all of them can
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, check=False,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:")


def test_scheduled_counts_this_process_cpu_as_the_kernel_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench_latency's scheduling shares: their run time agrees with the process CPU
    clock over the same stretch of work (long beside /proc's 10 ms ticks)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from kafka_rig import Scheduled, scheduled

    before, clock = scheduled(os.getpid()), time.process_time()
    sum(i * i for i in range(8_000_000))
    used, on_clock = scheduled(os.getpid()) - before, time.process_time() - clock
    assert isinstance(used, Scheduled)
    assert used.ran_s == pytest.approx(on_clock, rel=0.2, abs=0.02)
    assert used.waited_ns >= used.main_waited_ns >= 0
