"""`forecaster run` as a service: serves its endpoints, forecasts, and stops cleanly on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.paths import SAMPLE_TICKS
from tests.support.waiting import wait_for

SAMPLE = SAMPLE_TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_run_forecasts_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    forecasts = tmp_path / "forecasts.jsonl"
    env = {
        **os.environ,
        "FORECASTER_INPUT": str(SAMPLE),
        "FORECASTER_RATE": "5000",
        "FORECASTER_FORECASTS_OUT": str(forecasts),
        "FORECASTER_DEAD_LETTERS_OUT": str(tmp_path / "dead-letters.jsonl"),
        "FORECASTER_BOOTSTRAP_STEPS": "100000000",  # stay naive: no TensorFlow in this test
        "FORECASTER_METRICS_HOST": "127.0.0.1",
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "forecaster", "run", "--metrics-port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: line_count(forecasts) >= 2000, "forecasts")
        assert status(f"http://127.0.0.1:{port}/healthz") == 200
        assert status(f"http://127.0.0.1:{port}/readyz") == 503  # no model yet
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
    finally:
        service.kill()
    assert service.returncode == 0, stderr.decode()[-2000:]
    assert b"received SIGTERM" in stderr
    log_lines = stderr.decode().strip().splitlines()
    assert "stopped after" in log_lines[-1] and "forecasts" in log_lines[-1], log_lines[-1]
    assert not [line for line in log_lines if line.startswith("{")], "JSON in the log stream"
    records = [json.loads(line) for line in forecasts.read_text().splitlines()]
    assert len(records) >= 2000 and all(r["model_version"] == "naive" for r in records)
