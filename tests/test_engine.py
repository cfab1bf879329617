from dataclasses import replace

import numpy as np
import pytest

from forecaster.engine import NAIVE, Engine, EngineParams
from forecaster.features import FeatureParams, model_inputs
from forecaster.model.spec import ModelSpec
from forecaster.ticks import RejectReason, TickColumns
from tests.support_models import random_stepper

PARAMS = EngineParams(features=FeatureParams(min_history=5), ring_length=16)


def columns(series: list[str], ts: list[int], price: list[float]) -> TickColumns:
    n = len(series)
    return TickColumns(
        position=np.arange(n, dtype=np.int64),
        series=series,
        ts=np.array(ts, np.int64),
        price=np.array(price, np.float64),
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )


def random_ticks(n: int, n_series: int, seed: int) -> TickColumns:
    rng = np.random.default_rng(seed)
    series = [f"S{i}" for i in rng.integers(0, n_series, n)]
    price = 50 * np.exp(rng.normal(0, 0.01, n))
    return columns(series, list(range(1, n + 1)), list(price))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batching_does_not_change_forecasts(cell: str) -> None:
    ticks = random_ticks(600, 7, seed=3)
    model = random_stepper(ModelSpec(cell=cell, layers=2, units=8))
    whole = Engine(PARAMS, model).process(ticks).forecasts
    engine = Engine(PARAMS, model)
    pieces = [engine.process(ticks.take(np.arange(i, min(i + 37, 600)))).forecasts
              for i in range(0, 600, 37)]  # fmt: skip
    one_by_one = np.concatenate([p.forecast for p in pieces])
    # float32 matmuls of other batch shapes may round differently in the last bits
    np.testing.assert_allclose(one_by_one, whole.forecast, rtol=1e-6)
    assert np.concatenate([p.naive for p in pieces]).tolist() == whole.naive.tolist()
    assert (~whole.naive).sum() == 600 - 7 * PARAMS.features.min_history


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


def test_block_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="block_rows must be >= 1"):
        EngineParams(block_rows=0)


def test_naive_until_warm_then_model() -> None:
    engine = Engine(PARAMS, random_stepper(ModelSpec(layers=2, units=4)))
    prices = [10.0, 10.1, 10.2, 10.0, 9.9, 10.3, 10.4]
    result = engine.process(columns(["X"] * 7, list(range(7)), prices)).forecasts
    assert result.versions() == [NAIVE] * 5 + ["test-v1"] * 2
    assert result.forecast[:5].tolist() == prices[:5]
    # The model stepped X's state; its forecast stays at the price until the series'
    # skill record trusts the model (forecaster.skill).
    assert np.any(engine.table.recurrent[engine.table.slot_of["X"]] != 0)


def test_no_model_means_naive_everywhere() -> None:
    result = Engine(PARAMS).process(random_ticks(200, 3, seed=1)).forecasts
    assert result.naive.all() and result.model_version == NAIVE
    np.testing.assert_array_equal(result.forecast, result.ticks.price)


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


@pytest.mark.parametrize("block_rows", [3, PARAMS.block_rows])
def test_swap_rewarms_states_from_history(block_rows: int) -> None:
    engine = Engine(replace(PARAMS, block_rows=block_rows))
    engine.process(random_ticks(300, 4, seed=5))
    model = random_stepper(ModelSpec(cell="gru", layers=2, units=6), seed=9, version="new")
    engine.swap_model(model)
    slots = engine.table.active_slots()
    history = engine.table.history(slots)
    for row, slot in enumerate(slots):
        n = int(history.length[row])
        x = model_inputs(history.z[row, :n], history.d[row, :n], history.ts[row, :n])
        state = model.zero_state(1)
        for t in range(n):
            _, state = model.step(x[t : t + 1], state)
        np.testing.assert_allclose(engine.table.recurrent[slot], state[0], atol=1e-6)
    assert engine.process(random_ticks(5, 4, seed=6)).forecasts.model_version == "new"


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


def messy_batches(seed: int, n_batches: int, size: int, n_series: int) -> list[TickColumns]:
    """Random batches over a few series with duplicate and out-of-order timestamps mixed in."""
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(n_batches):
        series = [f"S{i}" for i in rng.integers(0, n_series, size)]
        ts = b * size + np.arange(1, size + 1)
        late = rng.random(size) < 0.08
        ts[late] -= rng.integers(0, 40, late.sum())  # equal or earlier than a tick before
        price = 50 * np.exp(rng.normal(0, 0.01, size))
        batches.append(columns(series, ts.tolist(), price.tolist()))
    return batches


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
