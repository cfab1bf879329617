"""A `forecaster run` replaying a short tick file (with malformed rows), and a real
Prometheus scraping it every second with the alert rules of deploy/ loaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.broker import free_port
from tests.support.deploy import (
    ALERT_RULES,
    JOB,
    TICKS_PREFIX,
    ForecasterProcess,
)
from tests.support.prometheus import (
    PrometheusServer,
    PrometheusTools,
    prometheus_tools_fixture,  # noqa: F401 (the prometheus_tools fixture, found here by pytest)
    scrape_config,
)
from tests.support.replay_input import ReplayInput, write_replay_input


@pytest.fixture(scope="session")
def replay_input(tmp_path_factory: pytest.TempPathFactory) -> ReplayInput:
    return write_replay_input(tmp_path_factory.mktemp("replay"), TICKS_PREFIX)


@pytest.fixture(scope="session")
def forecaster_service(
    replay_input: ReplayInput, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ForecasterProcess]:
    """Started, not waited for: TensorFlow loads while other fixtures set up."""
    service = ForecasterProcess(replay_input, tmp_path_factory.mktemp("service"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def prometheus(
    forecaster_service: ForecasterProcess,
    prometheus_tools: PrometheusTools,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        prometheus_tools.prometheus, tmp_path_factory.mktemp("prometheus"), free_port()
    )
    server.start(scrape_config(JOB, f"127.0.0.1:{forecaster_service.port}", [ALERT_RULES]))
    yield server
    server.stop()
