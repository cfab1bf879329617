"""The benchmark scripts still start: the suite runs none of them (their figures need a
machine to themselves), so an API they use that moved would go unseen until a release."""

import subprocess
import sys
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
