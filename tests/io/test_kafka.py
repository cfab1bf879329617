"""The Kafka transport end to end, against a real Kafka-protocol broker (Tansu) on loopback.

Every wait is on a condition with a deadline, never a sleep: the machines are slow and
noisy. The service never trains (``bootstrap_steps`` is huge), so it never imports
TensorFlow and every forecast is naive, which is all delivery needs.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from forecaster.config import Settings
from tests.support.broker import TansuBroker, read_topic
from tests.support.kafka import (
    BATCH,
    EXIT_BOUND_S,
    PREFIX_ROWS,
    SAMPLE,
    WAIT_S,
    ServiceProcess,
    check_dead_letters_point_at_their_originals,
    committed_up_to,
    end_offsets_of,
    expected_keys,
    forecast_keys,
    make_topics,
    on_both_clients,
    publish_input,
    read_until_complete,
    split_csv,
    start_in_process,
)

pytestmark = pytest.mark.kafka

PACED_RATE = 500  # ticks/s of the input published while a service works

# --- 1: sample and malformed ticks through an in-process service -----------------------------


@on_both_clients
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


# --- 2: SIGTERM mid-stream, then a restart ----------------------------------------------------


@on_both_clients
def test_a_stopped_and_restarted_service_skips_no_tick(
    settings: Settings, sample_prefix: Path, service_log: Path, tmp_path: Path
) -> None:
    make_topics(settings)
    head, tail = split_csv(sample_prefix, BATCH, tmp_path)
    expected = expected_keys(sample_prefix)
    publish_input(settings, head)
    first = ServiceProcess(settings, service_log)
    read_topic(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) > 0, WAIT_S)
    with ThreadPoolExecutor(1) as publisher:
        # The rest arrives while the services work, paced so that SIGTERM lands mid-stream.
        publishing = publisher.submit(publish_input, settings, tail, PACED_RATE)
        read_topic(
            settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 3 * BATCH, WAIT_S
        )
        code, seconds = first.terminate()
        assert code == 0 and seconds < EXIT_BOUND_S, f"exit {code} after {seconds:.1f} s"
        second = ServiceProcess(settings, service_log)
        try:
            publishing.result()
            keys = forecast_keys(read_until_complete(settings, expected))
        finally:
            code, _ = second.terminate()
    assert set(keys) == expected, f"{len(expected - set(keys))} ticks without a forecast"
    assert len(keys) - len(set(keys)) <= BATCH, "more duplicates than one batch in flight"
    assert code == 0


# --- 3: the broker down at start and killed mid-run -------------------------------------------


@on_both_clients
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
        # Every offset committed before the kill: a commit still due (overlap_delivery
        # commits a batch's offsets at the next step) would land on the empty broker that
        # comes back, where it points past the ticks published again.
        inputs = read_topic(settings.bootstrap_servers, settings.input_topic,
                            lambda r: len(r) >= len(before), WAIT_S)  # fmt: skip
        ends = end_offsets_of(inputs)
        assert committed_up_to(settings, ends) == ends

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
