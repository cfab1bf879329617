"""The benchmark scripts still start: the suite runs none of them (their figures need a
machine to themselves), so an API they use that moved would go unseen until a release.
And the scheduling probe bench_latency names its limits with reads what the kernel does."""

import os
import subprocess
import sys
import threading
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
    clock over the same stretch of work (long beside /proc's 10 ms ticks), with a thread
    that ends meanwhile."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from kafka_rig import Scheduled, scheduled

    release = threading.Event()
    ended = threading.Thread(target=release.wait)
    ended.start()
    before, clock = scheduled(os.getpid()), time.process_time()
    release.set()
    ended.join()
    sum(i * i for i in range(8_000_000))
    after, on_clock = scheduled(os.getpid()), time.process_time() - clock
    used = after - before
    assert isinstance(used, Scheduled)
    assert used.ran_s == pytest.approx(on_clock, rel=0.2, abs=0.02)
    assert ended.native_id in before.waits_ns and ended.native_id not in after.waits_ns
    assert used.waited_ns >= used.main_waited_ns >= 0


def test_a_thread_that_ended_takes_its_wait_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's wait over a stretch sums its live threads' waits since the start of it:
    an ended thread's whole wait would otherwise be subtracted from the others (CI once
    read a process wait smaller than its main thread's), and a thread id reused by a new
    thread counts from zero."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from kafka_rig import Scheduled, Snapshot

    before = Snapshot(1.0, {10: 100, 11: 50_000, 12: 7_000}, pid=10)
    after = Snapshot(1.5, {10: 300, 12: 40, 13: 25}, pid=10)
    assert after - before == Scheduled(0.5, 200 + 40 + 25, 200)
