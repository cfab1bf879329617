"""The deploy tests' service: `forecaster run` replaying a short tick file in a
subprocess, read through its /metrics, beside the paths of deploy/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.broker import free_port
from tests.support.paths import ROOT
from tests.support.prometheus import wait_until
from tests.support.replay_input import ReplayInput

DEPLOY = ROOT / "deploy"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
TICKS_PREFIX = 1000  # 14 series, each past min_history: model forecasts get scored
LABELLED_SERIES = ("AR-GAMMA", "RW-DOGE")
REPLAY_RATE = 300  # ticks/s: the replay lasts a few scrapes
JOB = "forecaster"  # the job name the dashboard and the alert rules expect
# Safety nets: serving the saved model needs no TensorFlow, and the replay takes seconds.
SERVICE_START_TIMEOUT_S = 1500.0
STOP_TIMEOUT_S = 120.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]  # (name, labels) -> value


class ForecasterProcess:
    """`forecaster run` (via tests/deploy/run_untrained.py) in a subprocess on a free port."""

    def __init__(self, replay: ReplayInput, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.forecasts = workdir / "forecasts.jsonl"
        self.dead_letters = workdir / "dead_letters.jsonl"
        self.log_path = workdir / "service.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("FORECASTER_")}
        env.update(
            FORECASTER_LOOP="false",
            FORECASTER_DEAD_LETTERS_OUT=str(self.dead_letters),
            FORECASTER_METRICS_HOST="127.0.0.1",
            FORECASTER_QUALITY_SERIES_LABELS=",".join(LABELLED_SERIES),
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        command = [
            sys.executable, "-m", "tests.deploy.run_untrained", "run",
            "--model-dir", str(workdir / "models"),
            "--input", str(replay.path),
            "--rate", str(REPLAY_RATE),
            "--metrics-port", str(self.port),
            "--forecasts-out", str(self.forecasts),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of GET ``path``; status 0 while nothing listens."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, OSError):
            return 0, ""

    def samples(self) -> Samples | None:
        """Every sample of /metrics; None when the scrape did not answer (a loaded machine)."""
        status, text = self.get("/metrics")
        if status == 0:
            return None
        assert status == 200, text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def wait_replayed(self, replay: ReplayInput) -> Samples:
        """The samples once every tick of ``replay`` was counted (the file ran out)."""

        def replayed() -> Samples | None:
            if self.process.poll() is not None:
                pytest.fail(f"forecaster exited {self.process.returncode}:\n{self.log()}")
            if self.get("/healthz")[0] != 200:
                return None
            samples = self.samples()
            if samples is None:
                return None
            done = samples[("forecaster_ticks_received_total", frozenset())] >= replay.received
            return samples if done else None

        return wait_until(replayed, SERVICE_START_TIMEOUT_S, "the replay to finish", self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        """SIGTERM, as an orchestrator would; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
