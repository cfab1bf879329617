"""A real Prometheus server on loopback for tests, installed from Debian when missing.

``prometheus_tools`` (a session fixture) finds ``prometheus`` and ``promtool`` on PATH or
installs Debian's ``prometheus`` package with apt (as root; where it cannot, the tests
that need it skip saying how to install it, and fail under ``CI=true``).
``PrometheusServer`` runs one on a free port with a temporary data directory and a
generated configuration:

    server = PrometheusServer(tools.prometheus, tmp_path, port)
    server.start(scrape_config("forecaster", "127.0.0.1:9108", rule_files=[rules]))
    server.query('sum(rate(forecaster_ticks_received_total[1m]))')   # -> result list
    server.stop()
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.apt import install_or_skip

PACKAGE = "prometheus"
READY_TIMEOUT_S = 300.0  # a safety net: Prometheus is ready in about a second
STOP_TIMEOUT_S = 10.0

T = TypeVar("T")


@dataclass(frozen=True)
class PrometheusTools:
    prometheus: Path
    promtool: Path


@pytest.fixture(scope="session", name="prometheus_tools")
def prometheus_tools_fixture() -> PrometheusTools:
    """``prometheus`` and ``promtool``, installed with apt first if they are not on PATH."""
    if not _on_path():
        install_or_skip(PACKAGE, "the monitoring tests, which scrape with a real Prometheus")
    tools = _on_path()
    if tools is None:
        pytest.fail(f"apt installed {PACKAGE}, yet prometheus/promtool are not on PATH")
    return tools


def _on_path() -> PrometheusTools | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        return None
    return PrometheusTools(Path(prometheus), Path(promtool))


def scrape_config(
    job: str, target: str, rule_files: Sequence[Path], interval: str = "1s"
) -> dict[str, Any]:
    """A configuration scraping ``target`` as ``job`` and evaluating ``rule_files``."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
    }


class PrometheusServer:
    """One Prometheus process; its log is ``workdir/prometheus.log``."""

    def __init__(self, binary: Path, workdir: Path, port: int) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, config: dict[str, Any]) -> None:
        """Write ``config``, start the server and return once it answers /-/ready."""
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        with (self.workdir / "prometheus.log").open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(self.binary),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, READY_TIMEOUT_S, "Prometheus to answer /-/ready", self.log)

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"Prometheus exited {self._process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/``path``; the ``data`` of a successful answer, else RuntimeError."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                answer = json.load(r)
        except urllib.error.HTTPError as exc:
            answer = json.load(exc)
        if answer.get("status") != "success":
            raise RuntimeError(f"Prometheus refused {path} {params}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query of ``expr`` now."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data]

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    context: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``condition`` until it returns something truthy (returned), or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{context()}")
        time.sleep(0.2)  # a polling interval, not a guess at how long anything takes
