"""Three streams that never mix: forecasts, dead letters and the log (forecaster/ops/logs.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import SAMPLE_DATA

SAMPLE = SAMPLE_DATA


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "TF_"))}


def test_a_replay_with_the_defaults_keeps_forecasts_dead_letters_and_log_apart(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "forecaster", "replay", str(SAMPLE / "malformed_ticks.csv"),
         "--out", "-"],
        cwd=tmp_path, env=clean_environment() | {"FORECASTER_BOOTSTRAP_STEPS": "1000000"},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    forecasts = [json.loads(line) for line in run.stdout.splitlines()]
    letters = [json.loads(line) for line in (tmp_path / "dead-letters.jsonl").open()]
    assert forecasts and all("forecast" in f for f in forecasts)
    assert letters and all("reason" in letter for letter in letters)
    log = run.stderr.splitlines()
    assert log and all(" forecaster." in line for line in log), log


def test_tensorflow_says_nothing_at_start_unless_asked() -> None:
    script = (
        "import sys; from forecaster.ops import logs; logs.configure(sys.argv[1]); "
        "import tensorflow as tf; tf.reduce_sum(tf.ones(3)).numpy()"
    )
    quiet = subprocess.run(
        [sys.executable, "-c", script, "INFO"], env=clean_environment(),
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
