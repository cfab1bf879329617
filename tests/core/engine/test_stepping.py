import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from forecaster.core.engine import Engine, stepping
from forecaster.core.features import STATS_DTYPE
from forecaster.core.ticks import RejectReason, TickColumns
from forecaster.model.spec import ModelSpec
from tests.support.engine import (
    PARAMS,
    SECOND,
    Faulty,
    assert_same_state,
    messy_batches,
    seconds_batch,
    table_state,
)
from tests.support.models import random_stepper
from tests.support.ticks import columns, random_ticks


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stepping_rounds_in_blocks_does_not_change_forecasts_or_states(cell: str) -> None:
    ticks = random_ticks(600, 40, seed=4)
    model = random_stepper(ModelSpec(cell=cell, layers=2, units=8))
    whole, blocked = Engine(PARAMS, model), Engine(replace(PARAMS, block_rows=3), model)
    expected, got = whole.process(ticks).forecasts, blocked.process(ticks).forecasts
    np.testing.assert_allclose(got.forecast, expected.forecast, rtol=1e-6)
    assert got.naive.tolist() == expected.naive.tolist()
    assert (~got.naive).sum() > 300  # the model stepped most ticks, in rounds of up to 40
    order = [blocked.table.slot_of[s] for s in whole.table.slot_of]
    np.testing.assert_allclose(
        blocked.table.recurrent[order],
        whole.table.recurrent[list(whole.table.slot_of.values())],
        rtol=1e-6,
        atol=1e-7,
    )


def test_duplicates_and_out_of_order_are_rejected_not_stepped() -> None:
    engine = Engine(PARAMS)
    engine.process(columns(["A"], [100], [1.0]))
    result = engine.process(
        columns(
            ["A", "A", "B", "A", "A", "B"],
            [100, 50, 7, 101, 101, 7],
            [1.0, 1.1, 2.0, 1.2, 1.3, 2.1],
        )
    )
    assert result.forecasts.ticks.position.tolist() == [2, 3]
    assert [(r.index, r.reason) for r in result.rejects] == [
        (0, RejectReason.TS_DUPLICATE),
        (1, RejectReason.TS_OUT_OF_ORDER),
        (4, RejectReason.TS_DUPLICATE),
        (5, RejectReason.TS_DUPLICATE),
    ]
    assert engine.table.stats["last_price"][engine.table.slot_of["A"]] == 1.2


def test_previous_forecast_is_reported_with_the_price_it_forecast() -> None:
    engine = Engine(PARAMS, random_stepper(ModelSpec(layers=2, units=4)))
    ticks = random_ticks(60, 2, seed=4)
    result = engine.process(ticks).forecasts
    for series in ("S0", "S1"):
        rows = [i for i, s in enumerate(result.ticks.series) if s == series]
        assert result.previous_price[rows[0]] == 0
        np.testing.assert_array_equal(
            result.previous_price[rows[1:]], result.ticks.price[rows[:-1]]
        )
        made = np.where(result.naive[rows[:-1]], 0.0, result.forecast[rows[:-1]])
        np.testing.assert_array_equal(result.previous_forecast[rows[1:]], made)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batched_engine_equals_a_tick_by_tick_reference(cell: str) -> None:
    model = random_stepper(ModelSpec(cell=cell, layers=2, units=8), seed=2)
    batched, reference = Engine(PARAMS, model), Engine(PARAMS, model)
    for ticks in messy_batches(seed=8, n_batches=4, size=250, n_series=9):
        got = batched.process(ticks)
        singles = [reference.process(ticks.take(np.array([i]))) for i in range(len(ticks))]
        kept = [i for i, r in enumerate(singles) if len(r.forecasts)]
        expected_rejects = [(i, r.rejects[0].reason) for i, r in enumerate(singles) if r.rejects]
        assert [(r.index, r.reason) for r in got.rejects] == expected_rejects
        assert got.forecasts.ticks.position.tolist() == kept
        for name in ("forecast", "naive", "previous_price", "previous_forecast"):
            want = np.concatenate([getattr(singles[i].forecasts, name) for i in kept])
            np.testing.assert_allclose(getattr(got.forecasts, name), want, rtol=1e-9, atol=0)
        assert (~got.forecasts.naive).sum() > 100 and got.rejects


def without(ticks: TickColumns, index: int) -> TickColumns:
    return ticks.take(np.delete(np.arange(len(ticks)), index))


def assert_tables_close(got: Engine, want: Engine) -> None:
    """Equal series in equal slots, with states equal up to float32 rounding (a model step
    of one row and of many may round differently)."""
    assert got.table.slot_of == want.table.slot_of
    for name in STATS_DTYPE.names or ():
        np.testing.assert_allclose(
            got.table.stats[name], want.table.stats[name], rtol=1e-6, atol=1e-6, err_msg=name
        )
    for name in ("last_forecast", "recurrent", "ring_newest_ts", "ring_track_ts", "ring_count"):
        np.testing.assert_allclose(
            getattr(got.table, name), getattr(want.table, name), rtol=1e-6, atol=1e-6,
            err_msg=name,
        )  # fmt: skip
    slots = got.table.active_slots()
    got_history, want_history = got.table.history(slots), want.table.history(slots)
    for name in ("z", "d"):  # a rounding apart may be a ring level apart
        np.testing.assert_allclose(getattr(got_history, name), getattr(want_history, name),
                                   atol=1.01 * got.table.codec.step, err_msg=name)  # fmt: skip
    np.testing.assert_array_equal(got_history.ts, want_history.ts)


def warmed_pair(spec: ModelSpec, bad_ts: list[int], fault: str) -> tuple[Engine, Engine]:
    """An engine with a Faulty model and one with the same model, fault-free, both warm."""
    faulty = Engine(PARAMS, Faulty(spec, bad_ts, fault))
    clean = Engine(PARAMS, Faulty(spec, [], fault))
    for engine in (faulty, clean):
        engine.process(seconds_batch(1, 200, 5))
        engine.commit()
    return faulty, clean


def later_batch(seed: int, n: int) -> TickColumns:
    batch = seconds_batch(seed, n, 5)
    return replace(batch, ts=batch.ts + 200 * SECOND)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_tick_whose_step_raises_is_rejected_and_every_other_tick_forecast_as_without_it(
    cell: str, caplog: pytest.LogCaptureFixture
) -> None:
    batch, bad = later_batch(2, 300), 123  # a warm tick: the model steps it
    faulty, clean = warmed_pair(ModelSpec(cell=cell, layers=2, units=8), [int(batch.ts[bad])],
                                "raise")  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="forecaster.faults")
    got, want = faulty.process(batch), clean.process(without(batch, bad))
    assert [(r.index, r.reason, r.detail) for r in got.rejects] == [
        (bad, RejectReason.INTERNAL_ERROR, "ValueError: poisoned input")
    ]
    assert not want.rejects
    assert any("stepping a tick" in record.getMessage() for record in caplog.records)
    assert got.forecasts.ticks.position.tolist() == want.forecasts.ticks.position.tolist()
    for name in ("forecast", "naive", "previous_price", "previous_forecast"):
        np.testing.assert_allclose(
            getattr(got.forecasts, name), getattr(want.forecasts, name), rtol=1e-9, atol=0
        )
    assert (~got.forecasts.naive).sum() > 200
    assert_tables_close(faulty, clean)


def test_a_batch_stepped_tick_by_tick_still_rolls_back_as_a_whole() -> None:
    batch, bad = later_batch(3, 100), 50
    faulty, _ = warmed_pair(ModelSpec(layers=1, units=4), [int(batch.ts[bad])], "raise")
    before = table_state(faulty)
    faulty.process(batch)
    faulty.rollback()
    assert_same_state(table_state(faulty), before)


@pytest.fixture
def poisoned_advance(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's feature step raises for a round holding a tick priced 13."""
    open_round = stepping._open_round

    def poisoned(*args: Any) -> bool:
        index, price = args[4], args[6]
        if (price[index] == 13.0).any():
            raise FloatingPointError("bad price")
        return bool(open_round(*args))

    monkeypatch.setattr(stepping, "_open_round", poisoned)


@pytest.mark.usefixtures("poisoned_advance")
def test_a_new_series_whose_first_tick_raises_gets_no_slot() -> None:
    engine = Engine(PARAMS)
    result = engine.process(columns(["A", "B", "C"], [1, 1, 1], [1.0, 13.0, 2.0]))
    assert [(r.index, r.reason) for r in result.rejects] == [(1, RejectReason.INTERNAL_ERROR)]
    assert result.forecasts.forecast.tolist() == [1.0, 2.0]
    assert list(engine.table.slot_of) == ["A", "C"]
    assert engine.table.uid[[engine.table.slot_of[s] for s in "AC"]].tolist() == [1, 2]


@pytest.mark.usefixtures("poisoned_advance")
def test_max_series_holds_when_ticks_are_stepped_one_at_a_time() -> None:
    engine = Engine(replace(PARAMS, max_series=1))
    result = engine.process(columns(["A", "B", "A"], [1, 1, 2], [1.0, 2.0, 13.0]))
    assert [(r.index, r.reason) for r in result.rejects] == [
        (1, RejectReason.SERIES_LIMIT), (2, RejectReason.INTERNAL_ERROR)
    ]  # fmt: skip
    assert list(engine.table.slot_of) == ["A"] and engine.table.stats["last_price"][0] == 1.0


@pytest.mark.parametrize("fault", ["nan", "inf"])
def test_a_non_finite_model_output_is_served_naive_and_leaves_no_non_finite_state(
    fault: str,
) -> None:
    batch = later_batch(4, 300)
    poisoned = [i for i, s in enumerate(batch.series) if s == "S2"][-8:]  # warm ticks of S2
    faulty, clean = warmed_pair(ModelSpec(layers=2, units=8), batch.ts[poisoned].tolist(), fault)
    got, want = faulty.process(batch), clean.process(batch)
    assert got.nonfinite == len(poisoned) and want.nonfinite == 0
    assert got.forecasts.naive[poisoned].all()
    np.testing.assert_array_equal(got.forecasts.forecast[poisoned], batch.price[poisoned])
    others = np.array([s != "S2" for s in batch.series])
    np.testing.assert_array_equal(got.forecasts.forecast[others], want.forecasts.forecast[others])
    table = faulty.table
    for name in STATS_DTYPE.names or ():
        assert np.isfinite(table.stats[name]).all(), name
    assert np.isfinite(table.recurrent).all() and np.isfinite(table.last_forecast).all()
    assert (table.recurrent[table.slot_of["S2"]] == 0).all()  # its last step failed
