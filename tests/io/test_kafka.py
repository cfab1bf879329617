"""The Kafka transport end to end, against a real Kafka-protocol broker (Tansu) on loopback.

Every wait is on a condition with a deadline, never a sleep: the machines are slow and
noisy. The service never trains (``bootstrap_steps`` is huge), so it never imports
TensorFlow and every forecast is naive, which is all delivery needs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.config import ENV_PREFIX, Settings
from forecaster.core.engine import Engine
from forecaster.core.ticks import parse_csv_frame, parse_messages
from forecaster.io.produce import publish
from forecaster.io.records import format_rfc3339
from forecaster.ops.metrics import Metrics
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

pytestmark = pytest.mark.kafka

SAMPLE = SAMPLE_DATA
PREFIX_ROWS = 2000  # of sample_data/ticks.csv: enough for many batches, quick to publish
BATCH = 200  # poll_max_records of the service under test
PARTITIONS = 4
WAIT_S = 120.0  # deadline of any wait; generous, the machines are slow
PUBLISH_TIMEOUT_MS = 60_000  # the test's own producer, per request
EXIT_BOUND_S = 30.0  # SIGTERM to exit, in-flight batch and group leave included

Key = tuple[str, str]  # (series, ts as the forecast writes it)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    tansu = TansuBroker(verified_tansu(), free_port(), tmp_path_factory.mktemp("tansu") / "log")
    tansu.start()
    yield tansu
    tansu.stop()


@pytest.fixture
def settings(broker: TansuBroker, request: pytest.FixtureRequest) -> Settings:
    """Settings of a service on topics of this test's own, tuned to join and fail over fast."""
    name = request.node.name
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
    )


def publish_input(settings: Settings, path: Path) -> None:
    """Publish ticks with the tests' own producer, which is not under test: it waits as
    long as a starved broker needs, where the service's settings give up in seconds (a
    5 s request timeout failed a set-up here, and 13 s batch expiry the scale-out test's,
    in clean-clone runs)."""
    patient = replace(settings, request_timeout_ms=PUBLISH_TIMEOUT_MS,
                      delivery_timeout_ms=2 * PUBLISH_TIMEOUT_MS)  # fmt: skip
    publish(patient, path, settings.input_topic)


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


def read_until_complete(
    settings: Settings, expected: set[Key], seen: Callable[[], set[Key]] = set
) -> list[Any]:
    """Forecast records, read until with ``seen()`` they cover ``expected`` or time is up."""
    return read_topic(
        settings.bootstrap_servers,
        settings.output_topic,
        lambda records: expected <= seen() | set(forecast_keys(records)),
        WAIT_S,
    )


# --- 1: sample and malformed ticks through an in-process service -----------------------------


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
    engine, metrics = Engine(settings.engine_params()), Metrics()
    source, sink, states = transport(settings, engine, metrics)
    pipeline = Pipeline(source, engine, sink, metrics, states=states)
    service = Service(settings, pipeline, threading.Event())
    thread = threading.Thread(target=service.run, name="service")
    thread.start()
    return InProcessService(service, thread)


def test_every_tick_gets_one_forecast_or_one_dead_letter(
    settings: Settings, sample_prefix: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """...also when no checkpoint can be written: its state directory is unwritable."""
    make_topics(settings)
    blocker = tmp_path / "blocked"  # a file where the state folder must be: even root fails
    blocker.write_text("")
    settings = replace(settings, state_dir=str(blocker / "state"), checkpoint_interval_s=0.05)
    malformed = SAMPLE / "malformed_ticks.csv"
    publish_input(settings, sample_prefix)
    reasons = pd.read_csv(malformed, dtype=str, keep_default_na=False)["expected_reason"]
    expected_reasons = Counter(reason for reason in reasons if reason)
    engine_rejects = expected_reasons["ts_duplicate"] + expected_reasons["ts_out_of_order"]
    produce_command(settings, malformed, len(reasons), expected_reasons.total() - engine_rejects)
    expected = expected_keys(sample_prefix, malformed)

    service = start_in_process(settings)
    try:
        forecasts = read_until_complete(settings, expected)
        letters = read_topic(
            settings.bootstrap_servers,
            settings.dlq_topic,
            lambda records: len(records) >= expected_reasons.total(),
            WAIT_S,
        )
        inputs = read_topic(
            settings.bootstrap_servers,
            settings.input_topic,
            lambda records: len(records) >= PREFIX_ROWS + len(reasons),
            WAIT_S,
        )
        end_offsets = end_offsets_of(inputs)
        committed = committed_up_to(settings, end_offsets)
    finally:
        service.stop()

    keys = forecast_keys(forecasts)
    assert set(keys) == expected
    reasons = Counter(dict(r.headers)["forecaster.reason"].decode() for r in letters)
    totals = service.service.pipeline.totals
    registry = service.service.pipeline.metrics.registry
    retried = {"kind": "transient"}
    if registry.get_sample_value("forecaster_kafka_produce_errors_total", retried) == 0:
        # Each batch written once. A batch the broker did not acknowledge in time (a
        # starved test broker) is processed again, correctly, with repeats.
        assert len(keys) == len(expected)
        assert (totals.accepted, totals.rejected) == (len(expected), expected_reasons.total())
        assert reasons == expected_reasons
    assert set(reasons) == set(expected_reasons) and reasons >= expected_reasons
    check_dead_letters_point_at_their_originals(letters, inputs, settings.input_topic)
    # Tansu's ListOffsets answers the last batch's base offset + 1, so the end offsets are
    # taken from the records themselves.
    assert committed == end_offsets
    failures = service.service.pipeline.metrics.registry.get_sample_value(
        "forecaster_checkpoint_failures_total"
    )
    assert failures is not None and failures > 0
    assert "checkpoint of partition" in caplog.text and "failed" in caplog.text


def produce_command(settings: Settings, path: Path, rows: int, not_ticks: int) -> None:
    """`forecaster produce`, checked to publish without importing TensorFlow."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "forecaster", "produce", str(path),
         "--bootstrap-servers", settings.bootstrap_servers, "--topic", settings.input_topic],
        capture_output=True, text=True, check=False, timeout=WAIT_S,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "forecaster.io.produce" in run.stderr and "tensorflow" not in run.stderr
    summary = run.stdout
    assert f"published {rows} messages" in summary, summary
    assert f"{not_ticks} rows are not valid ticks" in summary, summary


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
        wait_for(
            lambda: committed_offsets(settings.bootstrap_servers, settings.group_id),
            lambda offsets: offsets == ends,
        )
    )


def wait_for(
    probe: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = WAIT_S
) -> Any:
    """``probe()`` until ``done(value)`` or the deadline; returns the last value."""
    deadline = time.monotonic() + timeout_s
    value = probe()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)  # a polling interval, not a guess at how long anything takes
        value = probe()
    return value


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
        body = wait_for(self.readiness, lambda body: text in body)
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


# --- 2: SIGTERM mid-stream, then a restart ----------------------------------------------------


def test_a_stopped_and_restarted_service_skips_no_tick(
    settings: Settings, sample_prefix: Path, service_log: Path, tmp_path: Path
) -> None:
    make_topics(settings)
    head, tail = split_csv(sample_prefix, BATCH, tmp_path)
    expected = expected_keys(sample_prefix)
    publish_input(settings, head)
    first = ServiceProcess(settings, service_log)
    read_topic(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) > 0, WAIT_S)
    # The rest arrives while the service works, paced so that SIGTERM lands mid-stream.
    publisher = threading.Thread(target=publish, args=(settings, tail, settings.input_topic, 500))
    publisher.start()
    read_topic(
        settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 3 * BATCH, WAIT_S
    )
    code, seconds = first.terminate()
    assert code == 0 and seconds < EXIT_BOUND_S, f"exit {code} after {seconds:.1f} s"
    publisher.join()

    second = ServiceProcess(settings, service_log)
    try:
        keys = forecast_keys(read_until_complete(settings, expected))
    finally:
        code, _ = second.terminate()
    assert set(keys) == expected, f"{len(expected - set(keys))} ticks without a forecast"
    assert len(keys) - len(set(keys)) <= BATCH, "more duplicates than one batch in flight"
    assert code == 0


# --- 3: the broker down at start and killed mid-run -------------------------------------------


def test_the_service_rides_out_a_broker_that_is_down_or_killed(
    broker: TansuBroker,
    settings: Settings,
    sample_prefix: Path,
    service_log: Path,
    tmp_path: Path,
) -> None:
    """Tansu keeps everything in memory: a killed broker comes back empty. So the test
    recreates the topics and publishes the input again after the restart; what it proves
    is that the service survives, says it is not ready while the broker is gone, comes
    back on its own and forecasts every tick published to the new broker. It cannot
    prove that offsets or data survive a broker crash: that is the broker's job."""
    head, _ = split_csv(sample_prefix, PREFIX_ROWS // 2, tmp_path)
    broker.kill()
    service = ServiceProcess(settings, service_log)
    try:
        service.wait_readiness("source not connected")

        broker.start()
        make_topics(settings)
        publish_input(settings, head)
        service.wait_readiness("no model loaded yet")  # connected again; naive, as configured
        before = set(forecast_keys(read_until_complete(settings, expected_keys(head))))
        assert before == expected_keys(head)

        broker.kill()
        service.wait_readiness("source not connected")
        assert service.alive()

        broker.start()
        make_topics(settings)
        publish_input(settings, sample_prefix)
        service.wait_readiness("no model loaded yet")
        expected = expected_keys(sample_prefix)
        after = set(forecast_keys(read_until_complete(settings, expected, lambda: before)))
        assert expected <= before | after, f"{len(expected - before - after)} ticks lost"
        assert service.alive()
    finally:
        if not broker.running():  # for the tests after this one
            broker.start()
        code, _ = service.terminate()
    assert code == 0
