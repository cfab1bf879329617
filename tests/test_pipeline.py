"""The pipeline's last line of defence: a fault that no stage isolated costs only the
record it is in (forecaster/pipeline.py)."""

import io
import json

import pytest

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import ParsedBatch
from forecaster.io.files import JsonLinesSink
from forecaster.io.kafka import source as kafka_source
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import Pipeline
from tests.support.messages import ListSource, Record

T0_MS = 1_767_225_600_000


def tick(offset: int, series: str) -> Record:
    value = json.dumps({"series": series, "ts": T0_MS + 1000 * offset, "price": 1 + offset / 100})
    return Record("ticks", 0, offset, series.encode(), value.encode(), [])


def run(
    records: list[Record], size: int
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    engine = Engine(EngineParams(features=FeatureParams(min_history=2), ring_length=4))
    forecasts, letters = io.BytesIO(), io.BytesIO()
    source = ListSource(records, size, require_key=True)
    pipeline = Pipeline(source, engine, JsonLinesSink(forecasts, letters), Metrics())
    while pipeline.step():
        pass
    assert source.committed == records[-1].offset + 1
    assert pipeline.totals.accepted + pipeline.totals.rejected == len(records)
    return (
        [json.loads(line) for line in forecasts.getvalue().splitlines()],
        [json.loads(line) for line in letters.getvalue().splitlines()],
    )


def test_a_fault_outside_every_stage_costs_only_its_own_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key check (a step no stage isolates) raises for any batch holding series BOOM:
    the batch is processed record by record, and only BOOM's record is a dead letter."""
    check = kafka_source._reject_key_mismatches

    def faulty(parsed: ParsedBatch, records: list[Record]) -> None:
        if "BOOM" in parsed.ticks.series:
            raise RuntimeError("a bug")
        check(parsed, records)

    monkeypatch.setattr(kafka_source, "_reject_key_mismatches", faulty)
    records = [tick(i, "BOOM" if i == 5 else f"S{i % 3}") for i in range(12)]
    forecasts, letters = run(records, size=4)
    others = [r for r in records if r.offset != 5]
    clean, _ = run([r._replace(offset=i) for i, r in enumerate(others)], size=4)

    assert [(d["reason"], d["source"]["offset"]) for d in letters] == [("internal_error", 5)]
    assert "RuntimeError: a bug" in str(letters[0]["detail"])
    assert forecasts == clean  # every other tick, exactly as without the bad one
