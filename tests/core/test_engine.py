import logging
from dataclasses import replace

import numpy as np
import pytest

from forecaster.core import engine as engine_module
from forecaster.core import features
from forecaster.core.engine import NAIVE, Engine, EngineParams
from forecaster.core.features import STATS_DTYPE, FeatureParams, FeatureStep, model_inputs
from forecaster.core.ticks import RejectReason, TickColumns
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.retraining.dataset import HistoryRecorder
from tests.support.models import random_stepper
from tests.support.ticks import columns, random_ticks

PARAMS = EngineParams(features=FeatureParams(min_history=5), ring_length=16)


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
    # skill record trusts the model (forecaster.core.skill).
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


# --- rollback, per-tick isolation, max_series, non-finite output, eviction clock -----------

SECOND = 1_000_000_000
START = 1_767_600_000 * SECOND  # 2026-01-05 08:00 UTC


def table_state(engine: Engine) -> dict[str, object]:
    """Everything the engine's table holds, copied."""
    table = engine.table
    arrays = ("stats", "last_forecast", "recurrent", "ring_z", "ring_d", "ring_ts",
              "ring_count", "partition", "uid")  # fmt: skip
    state: dict[str, object] = {name: getattr(table, name).copy() for name in arrays}
    state["slot_of"] = dict(table.slot_of)
    state["series"] = list(table.series)
    state["free"] = list(table._free)
    state["next_uid"] = table._next_uid
    return state


def assert_same_state(got: dict[str, object], want: dict[str, object]) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            assert got[name] == value, name


def recorded(recorder: HistoryRecorder) -> list[tuple[list[float], list[int]]]:
    return [(s.z.tolist(), s.ts.tolist()) for s in recorder.sequences()]


def two_batches(seed: int) -> tuple[TickColumns, TickColumns]:
    """A first batch of 6 series, then one of those and 4 new ones, each series ticking many
    times in a batch (its ring of 16 wraps) and some ticks out of order."""
    first, second = messy_batches(seed, n_batches=2, size=300, n_series=6)
    renamed = [s if s in ("S0", "S1") else f"N{s}" for s in second.series]
    return first, replace(second, series=renamed)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("block_rows", [2, PARAMS.block_rows])
def test_a_rolled_back_batch_leaves_no_trace_and_redone_equals_done_once(
    cell: str, block_rows: int
) -> None:
    model = random_stepper(ModelSpec(cell=cell, layers=2, units=8), seed=4)
    params = replace(PARAMS, block_rows=block_rows)
    first, second = two_batches(seed=12)
    once, redone = (Engine(params, model, HistoryRecorder(10_000)) for _ in range(2))
    for engine in (once, redone):
        engine.process(first)
        engine.commit()
    before = table_state(redone)
    redone.process(second)
    redone.rollback()
    assert_same_state(table_state(redone), before)
    want, got = once.process(second), redone.process(second)
    for engine in (once, redone):
        engine.commit()
    for name in ("forecast", "naive", "previous_price", "previous_forecast"):
        np.testing.assert_array_equal(getattr(got.forecasts, name), getattr(want.forecasts, name))
    assert [(r.index, r.reason) for r in got.rejects] == [(r.index, r.reason) for r in want.rejects]
    assert_same_state(table_state(redone), table_state(once))
    assert recorded(redone.recorder) == recorded(once.recorder)  # type: ignore[arg-type]
    assert (~want.forecasts.naive).sum() > 100 and want.rejects  # the model stepped; rejects


def test_a_rollback_after_a_model_swap_goes_back_to_the_swap() -> None:
    first, second = two_batches(seed=13)
    new = random_stepper(ModelSpec(cell="gru", layers=1, units=4), seed=2, version="new")
    once, redone = Engine(PARAMS), Engine(PARAMS)  # naive first, then the new model
    for engine in (once, redone):
        engine.process(first)
        engine.swap_model(new)  # commits the first batch
    before = table_state(redone)
    redone.process(second)
    redone.rollback()
    assert_same_state(table_state(redone), before)
    want, got = once.process(second).forecasts, redone.process(second).forecasts
    np.testing.assert_array_equal(got.forecast, want.forecast)
    assert got.model_version == "new" and not got.naive.all()
    assert_same_state(table_state(redone), table_state(once))


def test_only_a_committed_batch_reaches_the_recorder_and_evicts() -> None:
    recorder = HistoryRecorder(1000)
    engine = Engine(replace(PARAMS, evict_ttl_ns=10 * SECOND), recorder=recorder)
    engine.process(columns(["A", "B"] * 8, [START + k * SECOND for k in range(16)], [1.0] * 16))
    engine.commit()
    steps = recorder.steps
    late = columns(["B", "C"] * 4, [START + (30 + k) * SECOND for k in range(8)], [2.0] * 8)
    engine.process(late)
    assert recorder.steps == steps and "A" in engine.table.slot_of  # pending: not yet
    engine.rollback()
    assert engine.commit() == 0  # nothing pending
    engine.process(late)
    assert engine.commit() == 1 and "A" not in engine.table.slot_of  # idle 23 s > 10 s
    assert recorder.steps == steps + 4  # B's four ticks, warm since the first batch


def test_moving_a_partition_or_swapping_the_model_commits_the_pending_batch() -> None:
    engine = Engine(PARAMS)
    engine.process(columns(["A"], [START], [1.0]))
    engine.take_partition(0)
    engine.process(columns(["B"], [START], [1.0]))
    engine.swap_model(random_stepper(ModelSpec(layers=1, units=4)))
    engine.rollback()  # nothing left to roll back
    assert list(engine.table.slot_of) == ["B"]


class Faulty(Stepper):
    """A random model whose step raises, or gives a NaN prediction, or an infinite state,
    for every row whose input has the time of day of one of ``bad_ts``."""

    def __init__(self, spec: ModelSpec, bad_ts: list[int], fault: str) -> None:
        base = random_stepper(spec, seed=7)
        super().__init__(base.spec, base.version, base.layers, base.head_kernel, base.head_bias)
        zeros = np.zeros(len(bad_ts))
        self.bad = model_inputs(zeros, zeros, np.array(bad_ts, np.int64))[:, 2]
        self.fault = fault

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prediction, new_state = super().step(x, state)
        rows = np.isin(x[:, 2], self.bad)
        if rows.any() and self.fault == "raise":
            raise ValueError("poisoned\ninput")
        if self.fault == "nan":
            prediction[rows] = np.nan
        elif self.fault == "inf":
            new_state[rows, 0] = np.inf
        return prediction, new_state


def seconds_batch(seed: int, n: int, n_series: int) -> TickColumns:
    """Ticks one second apart (each its own time of day) over a few series."""
    rng = np.random.default_rng(seed)
    series = [f"S{i}" for i in rng.integers(0, n_series, n)]
    price = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return columns(series, [START + k * SECOND for k in range(n)], price.tolist())


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
    for name in ("last_forecast", "recurrent", "ring_z", "ring_d", "ring_ts", "ring_count"):
        np.testing.assert_allclose(
            getattr(got.table, name), getattr(want.table, name), rtol=1e-6, atol=1e-6,
            err_msg=name,
        )  # fmt: skip


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
    """The engine's feature step raises for a tick priced 13."""

    def advance(params: FeatureParams, stats: np.ndarray, price: np.ndarray, ts: np.ndarray
                ) -> FeatureStep:  # fmt: skip
        if (price == 13.0).any():
            raise FloatingPointError("bad price")
        return features.advance(params, stats, price, ts)

    monkeypatch.setattr(engine_module, "advance", advance)


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


def test_an_exception_that_escapes_leaves_the_table_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = Engine(PARAMS, random_stepper(ModelSpec(layers=1, units=4)))
    engine.process(random_ticks(100, 3, seed=1))
    engine.commit()
    before = table_state(engine)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_module, "calibrate", interrupted)
    ticks = random_ticks(100, 5, seed=2)
    with pytest.raises(KeyboardInterrupt):
        engine.process(replace(ticks, ts=ticks.ts + 1000))
    assert_same_state(table_state(engine), before)


def test_max_series_refuses_new_series_only_until_eviction_frees_a_slot() -> None:
    engine = Engine(replace(PARAMS, max_series=3, evict_ttl_ns=10 * SECOND))
    first = engine.process(columns(["A", "B", "C", "D", "A", "D"],
                                   [START] * 4 + [START + SECOND] * 2, [1.0] * 6))  # fmt: skip
    engine.commit()
    assert [(r.index, r.reason) for r in first.rejects] == [
        (3, RejectReason.SERIES_LIMIT), (5, RejectReason.SERIES_LIMIT)
    ]  # fmt: skip
    assert first.forecasts.ticks.series == ["A", "B", "C", "A"]
    assert len(engine.table) == 3 and "D" not in engine.table.slot_of
    slot_of_b = engine.table.slot_of["B"]
    later = engine.process(columns(["A", "C", "D"], [START + 20 * SECOND] * 3, [1.0] * 3))
    assert [r.reason for r in later.rejects] == [RejectReason.SERIES_LIMIT]
    assert engine.commit() == 1  # B, idle for 20 s: its slot is free from the next batch
    again = engine.process(columns(["D", "E"], [START + 21 * SECOND] * 2, [1.0] * 2))
    assert again.forecasts.ticks.series == ["D"] and engine.table.slot_of["D"] == slot_of_b
    assert [(r.index, r.reason) for r in again.rejects] == [(1, RejectReason.SERIES_LIMIT)]


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


def test_a_state_made_non_finite_by_a_rewarm_starts_from_zeros() -> None:
    engine = Engine(PARAMS)
    ticks = seconds_batch(5, 100, 3)
    engine.process(ticks)
    engine.commit()
    engine.swap_model(Faulty(ModelSpec(layers=1, units=4), [int(ticks.ts[-1])], "inf"))
    recurrent, slot_of = engine.table.recurrent, engine.table.slot_of
    assert np.isfinite(recurrent).all()
    assert [bool((recurrent[slot_of[s]] == 0).all()) for s in sorted(slot_of)] == [
        s == ticks.series[-1] for s in sorted(slot_of)
    ]


def test_one_far_future_tick_neither_evicts_live_series_nor_stops_eviction() -> None:
    engine = Engine(replace(PARAMS, evict_ttl_ns=10 * SECOND))
    evicted = []

    def second(k: int, series: list[str]) -> None:
        engine.process(columns(series, [START + k * SECOND] * len(series), [1.0] * len(series)))
        evicted.append(engine.commit())

    for k in range(30):
        second(k, ["A", "B", "C", "D"])
    year_2150 = 5_680_000_000 * SECOND
    engine.process(columns(["A"], [year_2150], [1.0]))
    assert engine.commit() == 0
    for k in range(30, 60):
        second(k, ["B", "C"])  # D goes idle at 29 s, A is stuck in 2150
    assert set(engine.table.slot_of) == {"A", "B", "C"} and sum(evicted) == 1
    for k in range(60, 90):
        second(k, ["C", "E"])  # B idle from 59 s on
    assert set(engine.table.slot_of) == {"A", "C", "E"} and sum(evicted) == 2


def test_a_lone_ticking_series_does_not_drive_the_eviction_clock() -> None:
    """The eviction clock's documented price: one series alone cannot evict the others."""
    engine = Engine(replace(PARAMS, evict_ttl_ns=10 * SECOND))
    engine.process(columns(["A", "B"], [START, START], [1.0, 1.0]))
    engine.commit()
    for k in range(1, 60):
        engine.process(columns(["A"], [START + k * SECOND], [1.0]))
        assert engine.commit() == 0
    engine.process(columns(["C"], [START + 60 * SECOND], [1.0]))  # a second series ticks
    assert engine.commit() == 1 and set(engine.table.slot_of) == {"A", "C"}


def test_a_partition_state_of_another_size_is_rewarmed_not_refused() -> None:
    """A checkpoint that names the serving model but holds states of another width (a
    damaged one) is put back re-warmed from its rings, like one of another model."""
    spec = ModelSpec(cell="gru", layers=1, units=4)
    engine = Engine(EngineParams(features=FeatureParams(min_history=3), ring_length=16),
                    random_stepper(spec, seed=3))  # fmt: skip
    ticks = random_ticks(200, 5, seed=8)
    engine.process(ticks)
    state = engine.take_partition(0)
    narrow = state.snapshot.recurrent[:, :2]
    damaged = replace(state, snapshot=replace(state.snapshot, recurrent=narrow))
    reference = Engine(engine.params, engine.model)
    reference.put_partition(replace(state, model_version="another"))
    engine.put_partition(damaged)
    got, want = engine.snapshot_partition(0).snapshot, reference.snapshot_partition(0).snapshot
    order_got, order_want = np.argsort(got.series), np.argsort(want.series)
    assert [got.series[i] for i in order_got] == [want.series[i] for i in order_want]
    assert got.recurrent.shape == (5, spec.state_size)
    assert np.allclose(got.recurrent[order_got], want.recurrent[order_want], atol=1e-6)
    assert np.abs(got.recurrent).sum() > 0  # re-warmed, not left at zero
