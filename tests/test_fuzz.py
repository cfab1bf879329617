"""Hostile input, generated: every bad message is one dead letter with its reason, the
pipeline never raises, and every valid tick interleaved with them gets its forecast.

The messages go through the real path: Kafka batches of records (as the consumer hands
them out) -> parse with input limits -> engine -> JSON-lines sink -> commit.
"""

from __future__ import annotations

import io
import json
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import TopicPartition

from forecaster.engine import Engine, EngineParams
from forecaster.features import FeatureParams
from forecaster.io.files import JsonLinesSink
from forecaster.io.kafka import KafkaBatch
from forecaster.io.records import format_rfc3339
from forecaster.model.spec import ModelSpec
from forecaster.pipeline import Pipeline
from forecaster.ticks import InputLimits
from tests.support_models import random_stepper

LIMITS = InputLimits(max_message_bytes=4096, max_price=1e9)
TOPIC = TopicPartition("ticks", 0)
Record = namedtuple("Record", "topic partition offset key value headers")
T0_MS = 1_767_225_600_000
SERIES = ("S0", "S1", "S2")


def message(**fields: Any) -> bytes:
    return json.dumps(fields, allow_nan=True).encode()


def json_literal(series: str, ts: int, price_literal: str) -> bytes:
    return f'{{"series": "{series}", "ts": {ts}, "price": {price_literal}}}'.encode()


def wrong_types() -> st.SearchStrategy[tuple[bytes, str]]:
    bad = st.one_of(st.booleans(), st.lists(st.integers(), max_size=2), st.just({}))
    return st.one_of(
        bad.map(lambda v: (message(series=v, ts=T0_MS, price=1.0), "series_type")),
        st.one_of(bad, st.floats(0.5, 9.5)).map(
            lambda v: (message(series="S0", ts=v, price=1.0), "ts_type")
        ),
        st.one_of(bad, st.text(max_size=5)).map(
            lambda v: (message(series="S0", ts=T0_MS, price=v), "price_type")
        ),
    )


def bad_messages() -> st.SearchStrategy[tuple[bytes, str]]:
    """A message that is not a valid tick, and the reason it must be rejected with."""
    fields = {"series": "S1", "ts": T0_MS, "price": 2.0}
    return st.one_of(
        st.text(max_size=20).map(lambda t: (("{" + t + "]").encode(), "invalid_json")),
        st.binary(max_size=20).map(lambda b: (b"\xff" + b, "not_utf8")),
        st.sampled_from(["series", "ts", "price"]).map(
            lambda k: (message(**{n: v for n, v in fields.items() if n != k}), f"missing_{k}")
        ),
        wrong_types(),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]).map(
            lambda p: (json_literal("S2", T0_MS, p), "price_not_finite")
        ),
        st.floats(-1e6, 0.0).map(
            lambda p: (message(series="S2", ts=T0_MS, price=p), "price_not_positive")
        ),
        st.floats(1.01e9, 1e300).map(
            lambda p: (message(series="S2", ts=T0_MS, price=p), "price_out_of_range")
        ),
        st.sampled_from(["yesterday", "2026-13-45T00:00:00Z", "2026-01-05T10:00:00", ""]).map(
            lambda t: (
                message(series="S0", ts=t, price=1.0),
                "ts_no_timezone" if t.endswith(":00") else "ts_format",
            )
        ),
        st.integers(5000, 9000).map(
            lambda n: (message(series="S0", ts=T0_MS, price=1.0, pad="x" * n), "message_too_large")
        ),
        st.text(st.characters(codec="utf-8"), min_size=201, max_size=260).map(
            lambda s: (message(series=s, ts=T0_MS, price=1.0), "series_length")
        ),
    )


@dataclass
class Stream:
    """Messages in order; the reason each bad one must get; the (series, ts) of valid ones."""

    payloads: list[bytes] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    valid: set[tuple[str, str]] = field(default_factory=set)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    stream, last_ts = Stream(), {}
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["valid", "valid", "bad", "duplicate", "out_of_order"]))
        series = draw(st.sampled_from(SERIES))
        if kind == "bad":
            payload, reason = draw(bad_messages())
        elif kind != "valid" and series in last_ts:
            before = 0 if kind == "duplicate" else draw(st.integers(1, 5000))
            payload = message(series=series, ts=last_ts[series] - before, price=3.0)
            reason = "ts_duplicate" if kind == "duplicate" else "ts_out_of_order"
        else:
            ts = last_ts.get(series, T0_MS) + draw(st.integers(1, 60_000))
            last_ts[series], reason = ts, ""
            payload = message(series=series, ts=ts, price=draw(st.floats(0.01, 1e6)))
            stream.valid.add((series, format_rfc3339(np.array([ts * 1_000_000]))[0]))
        if reason:
            stream.reasons[len(stream.payloads)] = reason
        stream.payloads.append(payload)
    return stream


@dataclass
class ListSource:
    """Hands out the records in batches of ``size``, as a consumer's polls would."""

    records: list[Record]
    size: int
    committed: int = 0

    def poll(self, timeout: float) -> KafkaBatch | None:
        if self.committed >= len(self.records):
            return None
        chunk = self.records[self.committed : self.committed + self.size]
        return KafkaBatch({TOPIC: chunk}, LIMITS)

    def commit(self, batch: KafkaBatch) -> None:
        self.committed = batch.next_offsets()[TOPIC]

    def connected(self) -> bool:
        return True

    def restoring(self) -> int:
        return 0

    def close(self) -> None:
        pass


# One message of every kind of bad, whatever hypothesis happens to draw.
EVERY_BAD_KIND = [
    (b"{]", "invalid_json"),
    (b"\xff{}", "not_utf8"),
    (message(ts=T0_MS, price=2.0), "missing_series"),
    (message(series="S1", price=2.0), "missing_ts"),
    (message(series="S1", ts=T0_MS), "missing_price"),
    (message(series=True, ts=T0_MS, price=1.0), "series_type"),
    (message(series="S0", ts=1.5, price=1.0), "ts_type"),
    (message(series="S0", ts=T0_MS, price="1.0"), "price_type"),
    (json_literal("S2", T0_MS, "NaN"), "price_not_finite"),
    (message(series="S2", ts=T0_MS, price=0.0), "price_not_positive"),
    (message(series="S2", ts=T0_MS, price=1e12), "price_out_of_range"),
    (message(series="S0", ts="yesterday", price=1.0), "ts_format"),
    (message(series="S0", ts="2026-01-05T10:00:00", price=1.0), "ts_no_timezone"),
    (message(series="S0", ts=T0_MS, price=1.0, pad="x" * 5000), "message_too_large"),
    (message(series="S" * 201, ts=T0_MS, price=1.0), "series_length"),
]


def every_bad_kind_between_valid_ticks() -> Stream:
    stream = Stream()
    for i, (payload, reason) in enumerate(EVERY_BAD_KIND):
        ts = T0_MS + 1000 * (i + 1)
        stream.payloads.append(message(series="S0", ts=ts, price=1.0 + i))
        stream.valid.add(("S0", format_rfc3339(np.array([ts * 1_000_000]))[0]))
        stream.reasons[len(stream.payloads)] = reason
        stream.payloads.append(payload)
    last = T0_MS + 1000 * len(EVERY_BAD_KIND)
    for ts, reason in ((last, "ts_duplicate"), (last - 1, "ts_out_of_order")):
        stream.reasons[len(stream.payloads)] = reason
        stream.payloads.append(message(series="S0", ts=ts, price=3.0))
    return stream


def test_every_kind_of_bad_message_is_a_dead_letter_with_its_reason() -> None:
    check_stream(every_bad_kind_between_valid_ticks(), batch_size=4)


@settings(max_examples=60)
@given(streams(), st.integers(1, 9))
def test_bad_messages_are_dead_letters_and_valid_ticks_forecasts(
    stream: Stream, batch_size: int
) -> None:
    check_stream(stream, batch_size)


def check_stream(stream: Stream, batch_size: int) -> None:
    """Through the pipeline: one dead letter per bad message, one forecast per valid tick."""
    records = [Record("ticks", 0, i, None, p, []) for i, p in enumerate(stream.payloads)]
    model = random_stepper(ModelSpec(cell="lstm", layers=1, units=4))
    engine = Engine(EngineParams(features=FeatureParams(min_history=2), ring_length=4), model)
    forecasts, letters = io.BytesIO(), io.BytesIO()
    pipeline = Pipeline(ListSource(records, batch_size), engine, JsonLinesSink(forecasts, letters))
    while pipeline.step():
        pass

    dead = [json.loads(line) for line in letters.getvalue().splitlines()]
    assert {d["source"]["offset"]: d["reason"] for d in dead} == stream.reasons
    assert len(dead) == len(stream.reasons)
    made = [json.loads(line) for line in forecasts.getvalue().splitlines()]
    assert sorted((f["series"], f["ts"]) for f in made) == sorted(stream.valid)
