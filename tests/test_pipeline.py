"""The pipeline's last line of defence: a fault that no stage isolated costs only the
record it is in (forecaster/pipeline.py)."""

import io
import json

import pytest

from forecaster.core.engine import Engine, EngineParams, ForecastBatch
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import ParsedBatch
from forecaster.io.files import JsonLinesSink
from forecaster.io.kafka import source as kafka_source
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import Pipeline
from tests.support.messages import ListSource, Record
from tests.support.models import random_stepper

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


class OneModel:
    """Model updates that have ``model`` ready once, when ``at`` batches have settled."""

    def __init__(self, model: Stepper, at: int) -> None:
        self.model: Stepper | None = model
        self.batches_left = at

    def settled(self, forecasts: ForecastBatch) -> None:
        self.batches_left -= 1

    def pending(self) -> Stepper | None:
        model = self.model if self.batches_left <= 0 else None
        if model is not None:
            self.model = None
        return model


def test_a_swap_in_the_background_installs_at_a_batch_boundary_and_serves_from_there() -> None:
    spec = ModelSpec(cell="lstm", layers=1, units=4)
    old, new = random_stepper(spec, seed=1, version="old"), random_stepper(spec, 2, "new")
    params = EngineParams(features=FeatureParams(min_history=2), ring_length=4,
                          rewarm_in_background=True)  # fmt: skip
    engine = Engine(params, old)
    forecasts, metrics = io.BytesIO(), Metrics()
    records = [tick(i, f"S{i % 5}") for i in range(200)]
    pipeline = Pipeline(ListSource(records, 10), engine, JsonLinesSink(forecasts, io.BytesIO()),
                        metrics, updates=OneModel(new, at=3))  # fmt: skip
    versions: list[set[str]] = []  # of each batch's forecasts
    while pipeline.step():
        lines = forecasts.getvalue().splitlines()
        forecasts.seek(0), forecasts.truncate()
        versions.append({json.loads(line)["model_version"] for line in lines} - {"naive"})
        if engine.rewarming is not None:  # what the next boundary does is then known
            engine.rewarming.settle(timeout_s=60)
    # ready once batches 0-2 settled: begun before batch 3, installed before batch 4
    assert versions == [set()] + [{"old"}] * 3 + [{"new"}] * 16  # the first batch: naive
    assert engine.model is new and engine.rewarming is None
    assert metrics.registry.get_sample_value("forecaster_swap_rewarm_seconds_count") == 1
    assert metrics.registry.get_sample_value("forecaster_swap_pause_seconds_count") == 2
