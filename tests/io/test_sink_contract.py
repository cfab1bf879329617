"""The contract every Sink keeps: one suite, run against every implementation (JSON lines
in files, Kafka topics on a real broker). A new sink passes this suite before anything
else uses it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forecaster.config import Settings
from forecaster.core.engine import Engine, EngineParams, ForecastBatch
from forecaster.core.ticks import Rejected, RejectReason, parse_messages
from forecaster.io.base import DeadLetter, Sink
from forecaster.io.files import JsonLinesSink
from forecaster.io.kafka import KafkaSink
from forecaster.io.records import encode_forecasts
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import DESTINATION_FAULTS
from tests.support.broker import create_topics, read_topic
from tests.support.kafka import KAFKA_CLIENTS, WAIT_S

Delivered = tuple[list[bytes], list[str]]  # forecast payloads, dead letters' reasons
Expected = tuple[int, int]  # how many forecasts and dead letters are due


@dataclass
class Case:
    """An implementation under contract: ``open()`` a sink, ``delivered(expected)`` what
    its destination holds once the expected forecasts and dead letters arrived,
    ``refusing()`` a sink whose destination takes nothing."""

    open: Callable[[], Sink]
    delivered: Callable[[Expected], Delivered]
    refusing: Callable[[], Sink]


def json_lines_case(folder: Path) -> Case:
    forecasts, letters = folder / "forecasts.jsonl", folder / "dead-letters.jsonl"

    def delivered(expected: Expected) -> Delivered:
        lines = forecasts.read_bytes().splitlines()
        reasons = [json.loads(line)["reason"] for line in letters.read_bytes().splitlines()]
        return lines, reasons

    def refusing() -> Sink:
        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody reads: every write fails with a broken pipe
        return JsonLinesSink(open(write_end, "wb"), (folder / "x.jsonl").open("wb"))

    return Case(
        lambda: JsonLinesSink(forecasts.open("wb"), letters.open("wb")), delivered, refusing
    )


def kafka_case(settings: Settings, client: str) -> Case:
    settings = replace(settings, kafka_client=client)
    create_topics(settings.bootstrap_servers, {settings.output_topic: 2, settings.dlq_topic: 1})

    def delivered(expected: Expected) -> Delivered:
        def read(topic: str, count: int) -> list[Any]:
            bootstrap = settings.bootstrap_servers
            return read_topic(bootstrap, topic, lambda records: len(records) >= count, WAIT_S)

        forecasts = read(settings.output_topic, expected[0])
        letters = read(settings.dlq_topic, expected[1])
        ordered = sorted(forecasts, key=lambda record: (record.partition, record.offset))
        reasons = [dict(record.headers)["forecaster.reason"].decode() for record in letters]
        return [record.value for record in ordered], reasons

    def refusing() -> Sink:
        nowhere = replace(settings, output_topic=f"{settings.output_topic}.none")
        create_topics(settings.bootstrap_servers, {nowhere.output_topic: 0})
        return KafkaSink(nowhere, Metrics())

    return Case(lambda: KafkaSink(settings, Metrics()), delivered, refusing)


@pytest.fixture(
    params=["jsonl", *(pytest.param(c, marks=pytest.mark.kafka) for c in KAFKA_CLIENTS)]
)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    if request.param == "jsonl":
        return json_lines_case(tmp_path)
    return kafka_case(request.getfixturevalue("settings"), request.param)


def forecasts_of(*series: str) -> ForecastBatch:
    messages = [b'{"series": "%s", "ts": %d, "price": 2.0}' % (s.encode(), 1000 + i)
                for i, s in enumerate(series)]  # fmt: skip
    return Engine(EngineParams()).process(parse_messages(messages).ticks).forecasts


def letter(reason: RejectReason) -> DeadLetter:
    return DeadLetter(Rejected(0, b"{oops", reason, "why"), {"file": "t.csv", "line": 2}, b"A")


def test_flushed_records_arrive_once_each_encoded_as_records_encodes_them(case: Case) -> None:
    sink = case.open()
    first, second = forecasts_of("A", "B"), forecasts_of("C")
    sink.write(first, [letter(RejectReason.INVALID_JSON)])
    sink.write(forecasts_of(), [])  # an empty batch delivers nothing
    sink.write(second, [letter(RejectReason.NOT_UTF8)])
    sink.flush()
    sink.close()
    payloads, reasons = case.delivered((3, 2))
    assert sorted(payloads) == sorted(encode_forecasts(first) + encode_forecasts(second))
    assert sorted(reasons) == ["invalid_json", "not_utf8"]
    assert all(np.isfinite(json.loads(p)["forecast"]) for p in payloads)


def test_a_destination_that_takes_nothing_fails_delivery_as_a_destination_fault(
    case: Case,
) -> None:
    sink = case.refusing()
    with pytest.raises(DESTINATION_FAULTS):
        sink.write(forecasts_of("A"), [])
        sink.flush()
    with pytest.raises(DESTINATION_FAULTS):  # and again: a refusal is not forgotten
        sink.write(forecasts_of("A"), [])
        sink.flush()
