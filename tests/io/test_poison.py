"""Hostile input and failing topics on the real test broker (Tansu) over loopback.

1. Every poison kind among a few thousand valid ticks in one run of `forecaster run`:
   every valid tick gets its forecast, every poison message exactly one dead letter with
   its reason, no partition is held back, the process lives on and SIGTERM exits 0.
2. A dead-letter topic that refuses every record: the input keeps flowing and the
   refusals are counted.
3. A failed delivery, SIGTERM, a restart: every forecast equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from forecaster.config import Settings
from forecaster.io.kafka import construct
from tests.support.broker import create_topics, read_topic
from tests.support.kafka import (
    PARTITIONS,
    PREFIX_ROWS,
    SAMPLE,
    WAIT_S,
    ServiceProcess,
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
from tests.support.recovery import (
    assert_as_uninterrupted,
    crash_settings,
    forecasts_until,
    keys_of,
    start_service,
    tick_file,
    uninterrupted,
)
from tests.support.waiting import probe_until

pytestmark = pytest.mark.kafka

TS = 1_767_225_600_000  # a valid epoch-ms ts for poison that is rejected before its ts counts
HUGE_HEADERS = [(f"trace-{i}", b"h" * 2000) for i in range(100)]  # 200 KB of headers


@dataclass(frozen=True)
class Poison:
    what: str
    key: bytes | None
    value: bytes | None
    reason: str
    headers: tuple[tuple[str, bytes], ...] = ()


def tick_json(series: str, ts: Any = TS, price: Any = 1.5) -> bytes:
    return json.dumps({"series": series, "ts": ts, "price": price}).encode()


def poison_messages(existing: str) -> list[Poison]:
    """One message of every kind a hostile producer can send; ``existing`` is a series
    that already has state."""
    known = existing.encode()
    return [
        Poison("lone surrogate series", b"X", b'{"series": "\\ud800", "ts": 1, "price": 10}',
               "series_invalid"),
        Poison("control character in series", b"X", tick_json("AR\u0000GAMMA"), "series_invalid"),
        Poison("1.1 MB message", known, b'{"series": "' + b"x" * 1_100_000 + b'"}',
               "message_too_large"),
        Poison("tick of an existing series dated 2150", known,
               tick_json(existing, "2150-01-01T00:00:00Z"), "ts_in_future"),
        Poison("key of another series", b"SOMEONE-ELSE", tick_json(existing), "key_mismatch"),
        Poison("no key", None, tick_json(existing), "key_mismatch"),
        Poison("integer past 4,300 digits", known,
               b'{"series": "A", "ts": 1, "price": 1' + b"0" * 5000 + b"}", "invalid_json"),
        Poison("deep nesting", known, b'{"series": ' + b"[" * 5000 + b"]" * 5000 + b"}",
               "invalid_json"),
        Poison("not UTF-8", known, b'{"series": "\xff", "ts": 1, "price": 1}', "not_utf8"),
        Poison("NaN price", known, tick_json(existing, price=float("nan")), "price_not_finite"),
        Poison("boolean ts", known, tick_json(existing, ts=True), "ts_type"),
        Poison("200 KB of headers", known, b"not json", "invalid_json", tuple(HUGE_HEADERS)),
        Poison("500 KB key", b"k" * 500_000, b"[]", "not_an_object"),
        Poison("no value", known, None, "invalid_json"),
        Poison("a series past max_series", b"NEW-SERIES", tick_json("NEW-SERIES"), "series_limit"),
    ]  # fmt: skip


def publish_poison(settings: Settings, poison: list[Poison]) -> dict[tuple[int, int], Poison]:
    """Send the poison with a producer that allows 4 MB requests; where each one landed."""
    producer = construct(
        KafkaProducer,
        {"bootstrap_servers": settings.bootstrap_servers, "max_request_size": 4 << 20,
         "request_timeout_ms": 60_000},
    )[0]  # fmt: skip
    topic = settings.input_topic
    try:
        futures = [
            (producer.send(topic, value=p.value, key=p.key, headers=list(p.headers)), p)
            for p in poison
        ]
        producer.flush(WAIT_S)
        landed = {}
        for future, p in futures:
            meta = future.get(timeout=WAIT_S)
            landed[(meta.partition, meta.offset)] = p
        return landed
    finally:
        producer.close(5)


def transient_errors(service: ServiceProcess) -> float:
    """forecaster_kafka_produce_errors_total{kind="transient"} of a running service."""
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "forecaster_kafka_produce_errors_total" and sample.labels == {
                "kind": "transient"
            }:
                return float(sample.value)
    raise AssertionError("no forecaster_kafka_produce_errors_total{kind=transient}")


def source_of(letter: Any) -> tuple[int, int]:
    headers = dict(letter.headers)
    return int(headers["forecaster.source.partition"]), int(headers["forecaster.source.offset"])


@on_both_clients
def test_poison_among_valid_ticks_costs_no_valid_tick_and_stops_nothing(
    settings: Settings, sample_prefix: Path, service_log: Path, tmp_path: Path
) -> None:
    head, tail = split_csv(sample_prefix, PREFIX_ROWS // 2, tmp_path)
    series = sorted(set(pd.read_csv(sample_prefix, dtype=str)["series"]))
    assert set(pd.read_csv(head, dtype=str)["series"]) == set(series)
    settings = replace(settings, max_series=len(series))
    make_topics(settings)
    publish_input(settings, head)
    service = ServiceProcess(settings, service_log)
    try:
        read_until_complete(settings, expected_keys(head))  # every series has state now
        landed = publish_poison(settings, poison_messages(existing=series[0]))
        publish_input(settings, tail)
        forecasts = read_until_complete(settings, expected_keys(sample_prefix))
        brokers, everything = settings.bootstrap_servers, PREFIX_ROWS + len(landed)
        letters = read_topic(brokers, settings.dlq_topic, lambda r: len(r) >= len(landed), WAIT_S)
        inputs = read_topic(brokers, settings.input_topic, lambda r: len(r) >= everything, WAIT_S)
        ends = end_offsets_of(inputs)
        committed = committed_up_to(settings, ends)
        assert service.alive(), f"the service exited; see {service_log}"
        retried = transient_errors(service)
    finally:
        code, _ = service.terminate()

    assert code == 0
    assert set(forecast_keys(forecasts)) == expected_keys(sample_prefix)
    assert committed == ends, "a partition was held back"
    sources = Counter(source_of(letter) for letter in letters)
    assert set(sources) == set(landed)
    if retried == 0:  # a batch a starved broker did not acknowledge is sent again, whole
        assert sources == Counter(list(landed)), "not exactly one dead letter per poison message"
    for letter in letters:
        poison = landed[source_of(letter)]
        headers = dict(letter.headers)
        assert headers["forecaster.reason"].decode() == poison.reason, poison.what
        size = len(poison.value or b"")
        assert headers["forecaster.size"] == str(size).encode(), poison.what
        assert letter.value == (poison.value or b"")[: settings.max_message_bytes], poison.what
        assert len(letter.key or b"") <= 1024
    text = service_log.read_text()
    assert "internal error" not in text, f"a poison met no rule of its own; see {service_log}"


@on_both_clients
def test_a_dead_letter_topic_that_refuses_records_holds_no_tick_back(
    settings: Settings, sample_prefix: Path
) -> None:
    """kafka-python cannot send to a topic with no partitions (IndexError): a dead-letter
    topic that cannot take records, as a broker that refuses them would be."""
    topics = {settings.input_topic: PARTITIONS, settings.output_topic: PARTITIONS}
    create_topics(settings.bootstrap_servers, topics | {settings.dlq_topic: 0})
    malformed = SAMPLE / "malformed_ticks.csv"
    publish_input(settings, sample_prefix)
    publish_input(settings, malformed)
    reasons = pd.read_csv(malformed, dtype=str, keep_default_na=False)["expected_reason"]
    rejected = sum(1 for reason in reasons if reason)
    service = start_in_process(settings)
    registry = service.service.pipeline.metrics.registry

    def refused() -> float:
        name = "forecaster_kafka_produce_errors_total"
        return registry.get_sample_value(name, {"kind": "permanent"}) or 0.0

    try:
        expected = expected_keys(sample_prefix, malformed)
        forecasts = read_until_complete(settings, expected)
        counted = probe_until(refused, lambda value: value >= rejected)
        why = service.service.ready()[1]
    finally:
        service.stop()
    assert set(forecast_keys(forecasts)) == expected
    retried = registry.get_sample_value("forecaster_kafka_produce_errors_total",
                                        {"kind": "transient"})  # fmt: skip
    if retried == 0:  # a batch a starved broker did not acknowledge is refused again, whole
        assert counted == rejected
        assert "delivery failing" not in why, why
    assert counted >= rejected


@on_both_clients
def test_a_failed_delivery_then_sigterm_then_a_restart_changes_no_forecast(
    settings: Settings, tmp_path: Path
) -> None:
    """Three runs on one checkpoint directory. The first forecasts the first half of the
    ticks and stops. The second, restored from its checkpoints, gets the second half but
    an output topic with no partitions: every delivery fails (kafka-python raises before
    sending), each batch is rolled back and retried, and SIGTERM arrives while it retries:
    it must not pair stepped state with the older offset. The third, with the output topic
    back, must forecast every tick as one uninterrupted engine would."""
    settings = crash_settings(settings, state_dir=str(tmp_path / "state"))
    make_topics(settings)
    broken = replace(settings, output_topic=f"{settings.output_topic}.broken")
    create_topics(settings.bootstrap_servers, {broken.output_topic: 0})
    path = tick_file(tmp_path / "ticks.csv")
    expected = uninterrupted(settings, path)
    frame = pd.read_csv(path, dtype=str)
    half = len(frame) // 2
    frame.iloc[:half].to_csv(tmp_path / "first.csv", index=False)
    frame.iloc[half:].to_csv(tmp_path / "second.csv", index=False)

    publish_input(settings, tmp_path / "first.csv")
    run_until(settings, tmp_path / "first.log", lambda: forecasts_until(settings, half, None))
    publish_input(settings, tmp_path / "second.csv")
    failing = tmp_path / "failing.log"
    run_until(
        broken, failing, lambda: probe_until(lambda: text_of(failing), lambda t: "not ack" in t)
    )
    assert "records not acknowledged" in text_of(failing), f"no delivery failed: {failing}"

    restarted = start_service(settings, tmp_path / "last.log")
    try:
        forecasts = forecasts_until(settings, len(expected), restarted)
    finally:
        restarted.terminate()
        restarted.join(WAIT_S)
    assert keys_of(forecasts) == set(expected), "ticks without a forecast"
    assert_as_uninterrupted(forecasts, expected)  # repeats included


def text_of(log: Path) -> str:
    return log.read_text() if log.exists() else ""  # the service may not have started yet


def run_until(settings: Settings, log: Path, condition: Callable[[], Any]) -> None:
    """A service until ``condition()`` returned, then SIGTERM: it must exit 0."""
    service = start_service(settings, log)
    try:
        condition()
        service.terminate()  # SIGTERM
        service.join(WAIT_S)
        assert service.exitcode == 0, f"exit {service.exitcode}; see {log}"
    finally:
        if service.is_alive():
            service.kill()
