import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from forecaster.core.engine import NAIVE, Engine, EngineParams, stepping
from forecaster.core.features import FeatureParams, model_inputs
from forecaster.core.ticks import TickColumns
from forecaster.model.spec import ModelSpec
from forecaster.retraining.dataset import HistoryRecorder
from tests.support.engine import (
    PARAMS,
    SECOND,
    START,
    Faulty,
    assert_same_state,
    messy_batches,
    seconds_batch,
    table_state,
)
from tests.support.models import random_stepper
from tests.support.ticks import columns, random_ticks


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


def test_an_exception_that_escapes_leaves_the_table_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = Engine(PARAMS, random_stepper(ModelSpec(layers=1, units=4)))
    engine.process(random_ticks(100, 3, seed=1))
    engine.commit()
    before = table_state(engine)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(stepping, "_forecasts", interrupted)  # after the rings moved on
    ticks = random_ticks(100, 5, seed=2)
    with pytest.raises(KeyboardInterrupt):
        engine.process(replace(ticks, ts=ticks.ts + 1000))
    assert_same_state(table_state(engine), before)


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


def test_loading_the_kernels_leaves_the_engine_as_it_was() -> None:
    """``load_kernels`` steps a scratch engine: this one holds no series, has nothing
    pending, and forecasts a stream exactly as an engine that never loaded them."""
    model = random_stepper(ModelSpec(layers=2, units=8), seed=5)
    loaded, plain = Engine(PARAMS, model), Engine(PARAMS, model)
    loaded.load_kernels()
    assert len(loaded.table) == 0
    loaded.rollback()  # nothing pending: a rollback now would undo nothing
    assert len(loaded.table) == 0
    ticks = random_ticks(120, 3, seed=2)
    got, want = loaded.process(ticks).forecasts, plain.process(ticks).forecasts
    np.testing.assert_array_equal(got.forecast, want.forecast)
    np.testing.assert_array_equal(got.upper, want.upper)
    assert not got.naive.all()


LOADS_KERNELS = """
import sys
from forecaster.core.engine import Engine
from forecaster.model import stepper
from forecaster.model.spec import ModelSpec
from tests.support.engine import PARAMS
from tests.support.models import random_stepper
cell = sys.argv[1]
kernels = [getattr(stepper, f"_{cell}_{way}") for way in ("rows", "gates")]
before = [len(kernel.signatures) for kernel in kernels]
Engine(PARAMS, random_stepper(ModelSpec(cell=cell, layers=1, units=3), seed=6)).load_kernels()
print(before, [len(kernel.signatures) for kernel in kernels])
"""


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_loading_the_kernels_loads_both_ways_the_model_steps(cell: str) -> None:
    """A round of a few series and one of many step the model by different compiled
    loops (``forecaster.model.stepper``); both are loaded before the first batch (in a
    process of its own: this one may have loaded them already)."""
    run = subprocess.run([sys.executable, "-c", LOADS_KERNELS, cell], capture_output=True,
                         text=True, check=True, timeout=300)  # fmt: skip
    assert run.stdout.split("] [") == ["[0, 0", "1, 1]\n"], run.stdout
