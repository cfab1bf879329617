"""Kafka test support: a Tansu broker per test module, a service's settings on topics of
the test's own, publishing ticks, reading topics, and `forecaster run` as a subprocess.

Every wait is on a condition with a deadline, never a sleep: the machines are slow and
noisy. The service never trains (``bootstrap_steps`` is huge), so it never imports
TensorFlow and every forecast is naive, which is all delivery needs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.config import ENV_PREFIX, Settings
from forecaster.config.settings import KAFKA_CLIENTS
from forecaster.core.engine import Engine
from forecaster.core.ticks import parse_csv_frame, parse_messages
from forecaster.io.produce import publish
from forecaster.io.records import format_rfc3339
from forecaster.ops.metrics import Metrics
from forecaster.params import engine_params
from forecaster.pipeline import Pipeline
from forecaster.service import Service, transport
from tests.support.broker import (
    TansuBroker,
    committed_offsets,
    create_topics,
    free_port,
    read_topic,
    verified_tansu,
)
from tests.support.paths import SAMPLE_DATA
from tests.support.waiting import probe_until

SAMPLE = SAMPLE_DATA
PREFIX_ROWS = 2000  # of sample_data/ticks.csv: enough for many batches, quick to publish
BATCH = 200  # poll_max_records of the service under test
PARTITIONS = 4
WAIT_S = 300.0  # deadline of any wait: a safety net, never what a passing run waits for
PUBLISH_TIMEOUT_MS = 60_000  # the test's own producer, per request
EXIT_BOUND_S = 30.0  # SIGTERM to exit, in-flight batch and group leave included

Key = tuple[str, str]  # (series, ts as the forecast writes it)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    tansu = TansuBroker(verified_tansu(), free_port(), tmp_path_factory.mktemp("tansu") / "log")
    tansu.start()
    yield tansu
    tansu.stop()


# A behaviour test that holds for both clients: ``@on_both_clients`` (it takes ``settings``).
on_both_clients = pytest.mark.parametrize("kafka_client", KAFKA_CLIENTS)


@pytest.fixture
def kafka_client() -> str:
    """The client of the service under test: the default, unless ``on_both_clients``."""
    return Settings.kafka_client


@pytest.fixture
def settings(broker: TansuBroker, request: pytest.FixtureRequest, kafka_client: str) -> Settings:
    """Settings of a service on topics of this test's own, tuned to join and fail over fast.

    Each join costs half the session timeout on Tansu (3 s here). The session stays at
    6 s all the same: it is also how long a live member's heartbeats may stall on a
    starved machine before the group evicts it, and an eviction repeats a batch, which
    the tests that count exactly would take for a fault."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)  # Kafka's topic name rule
    return Settings(
        bootstrap_servers=broker.bootstrap,
        input_topic=f"{name}.ticks",
        output_topic=f"{name}.forecasts",
        dlq_topic=f"{name}.dlq",
        group_id=name,
        bootstrap_steps=10**9,
        metrics_port=0,
        poll_max_records=BATCH,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        max_poll_interval_ms=10000,
        request_timeout_ms=5000,
        delivery_timeout_ms=10000,
        reconnect_backoff_max_ms=1000,
        kafka_client=kafka_client,
    )


def publish_input(settings: Settings, path: Path, rate: float = 0.0) -> None:
    """Publish ticks (``rate`` a second; 0 = flat out) with the tests' own producer, which
    is not under test: it waits as long as a starved broker needs, where the service's
    settings give up in seconds (a 5 s request timeout failed a set-up here, and 13 s
    batch expiry the scale-out test's, in clean-clone runs)."""
    patient = replace(settings, request_timeout_ms=PUBLISH_TIMEOUT_MS,
                      delivery_timeout_ms=2 * PUBLISH_TIMEOUT_MS)  # fmt: skip
    publish(patient, path, settings.input_topic, rate)


def make_topics(settings: Settings) -> None:
    create_topics(
        settings.bootstrap_servers,
        {
            settings.input_topic: PARTITIONS,
            settings.output_topic: PARTITIONS,
            settings.dlq_topic: 1,
        },
    )


@pytest.fixture(scope="module")
def sample_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = pd.read_csv(SAMPLE / "ticks.csv", dtype=str, keep_default_na=False)
    path = tmp_path_factory.mktemp("ticks") / "prefix.csv"
    frame.head(PREFIX_ROWS).to_csv(path, index=False)
    return path


def split_csv(path: Path, rows: int, out: Path) -> tuple[Path, Path]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    head, tail = out / "head.csv", out / "tail.csv"
    frame.head(rows).to_csv(head, index=False)
    frame.iloc[rows:].to_csv(tail, index=False)
    return head, tail


def expected_keys(*paths: Path) -> set[Key]:
    """(series, ts) of every row meant to be forecast: valid, and in order in its series."""
    keys: set[Key] = set()
    for path in paths:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "expected_reason" in frame.columns:
            frame = frame[frame["expected_reason"] == ""].reset_index(drop=True)
        ticks = parse_csv_frame(frame).ticks
        keys.update(zip(ticks.series, format_rfc3339(ticks.ts), strict=True))
    return keys


def forecast_keys(records: list[Any]) -> list[Key]:
    return [(f["series"], f["ts"]) for f in (json.loads(r.value) for r in records)]


class KeysRead:
    """The distinct keys of a growing list of forecast records, each record parsed once:
    a wait that parsed every record again at each poll would cost the more CPU, the
    longer a starved service makes it wait."""

    def __init__(self) -> None:
        self.keys: set[Key] = set()
        self._parsed = 0

    def of(self, records: list[Any]) -> set[Key]:
        """Every key so far; ``records`` is the list seen last time, grown."""
        self.keys.update(forecast_keys(records[self._parsed :]))
        self._parsed = len(records)
        return self.keys


def read_until_complete(
    settings: Settings, expected: set[Key], seen: Callable[[], set[Key]] = set
) -> list[Any]:
    """Forecast records, read until with ``seen()`` they cover ``expected`` or time is up."""
    keys = KeysRead()
    return read_topic(
        settings.bootstrap_servers,
        settings.output_topic,
        lambda records: expected <= seen() | keys.of(records),
        WAIT_S,
    )


@dataclass
class InProcessService:
    service: Service
    thread: threading.Thread

    def stop(self) -> None:
        self.service.stop.set()
        self.thread.join(EXIT_BOUND_S)
        assert not self.thread.is_alive()


def start_in_process(settings: Settings) -> InProcessService:
    """The service's Kafka pipeline on a thread: what `forecaster run` builds, minus signals."""
    engine, metrics = Engine(engine_params(settings)), Metrics()
    source, sink, states = transport(settings, engine, metrics)
    pipeline = Pipeline(
        source, engine, sink, metrics, states=states, overlap=settings.overlap_delivery
    )
    service = Service(settings, pipeline, threading.Event())
    thread = threading.Thread(target=service.run, name="service")
    thread.start()
    return InProcessService(service, thread)


def end_offsets_of(records: list[Any]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


def check_dead_letters_point_at_their_originals(
    letters: list[Any], inputs: list[Any], topic: str
) -> None:
    originals = {(r.partition, r.offset): r for r in inputs}
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers}
        assert headers["forecaster.source.topic"] == topic
        source = (
            int(headers["forecaster.source.partition"]),
            int(headers["forecaster.source.offset"]),
        )
        original = originals[source]
        assert (letter.value, letter.key) == (original.value, original.key)
        assert headers["forecaster.detail"]
        parsed = parse_messages([letter.value])
        if parsed.rejects:  # the engine's rejects (ts order) parse fine on their own
            assert parsed.rejects[0].reason.value == headers["forecaster.reason"]


def committed_up_to(settings: Settings, ends: dict[int, int]) -> dict[int, int]:
    """The group's committed offsets, read until they equal ``ends`` or time is up."""
    return dict(
        probe_until(
            lambda: committed_offsets(settings.bootstrap_servers, settings.group_id),
            lambda offsets: offsets == ends,
        )
    )


# --- `forecaster run` subprocesses ------------------------------------------------------------


class ServiceProcess:
    """`forecaster run` configured by flags and FORECASTER_* variables, logging to a file."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.metrics_port = free_port()
        flags = ["--bootstrap-servers", settings.bootstrap_servers, "--input-topic",
                 settings.input_topic, "--output-topic", settings.output_topic, "--dlq-topic",
                 settings.dlq_topic, "--group-id", settings.group_id, "--metrics-port",
                 str(self.metrics_port)]  # fmt: skip
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "forecaster", "run", *flags],
                env=os.environ | environment_of(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def readiness(self) -> str:
        """The /readyz answer body, or '' while the endpoint is not up."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())
        except urllib.error.HTTPError as refusal:
            return str(refusal.read().decode())
        except OSError:
            return ""

    def wait_readiness(self, text: str) -> None:
        body = probe_until(self.readiness, lambda body: text in body)
        assert text in body, f"/readyz said {body!r}; see {self.log}"

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the exit took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return code, time.monotonic() - started


def environment_of(settings: Settings) -> dict[str, str]:
    """FORECASTER_* variables for every setting that differs from its default."""
    defaults = Settings()
    return {
        ENV_PREFIX + f.name.upper(): str(getattr(settings, f.name))
        for f in fields(Settings)
        if getattr(settings, f.name) != getattr(defaults, f.name)
    }


@pytest.fixture
def service_log(tmp_path: Path) -> Path:
    return tmp_path / "service.log"
