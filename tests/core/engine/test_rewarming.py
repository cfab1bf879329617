"""A swap re-warmed off the loop (``begin_swap``/``continue_swap``) installs, for every
series, exactly the state a synchronous ``swap_model`` at the boundary its ring was
copied, then serving the new model since, would hold: through ticks, new series, a
rolled-back batch, a partition taken and put back, and evictions during the re-warm."""

import sys
from dataclasses import replace

import numpy as np
import pytest

from forecaster.core.engine import Engine
from forecaster.core.engine.rewarming import RewarmJob
from forecaster.core.ticks import TickColumns
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from tests.support.engine import PARAMS, SECOND, START, assert_same_state, table_state
from tests.support.models import random_stepper
from tests.support.ticks import columns

OLD = random_stepper(ModelSpec(cell="gru", layers=1, units=4), seed=1, version="old")
NEW = random_stepper(ModelSpec(cell="lstm", layers=2, units=8), seed=2, version="new")
NEWER = random_stepper(ModelSpec(cell="gru", layers=2, units=6), seed=3, version="newer")
PARAMS_EVICTING = replace(PARAMS, evict_ttl_ns=1_000 * SECOND)
ORIGINALS = [f"S{i}" for i in range(12)]
MOVED = ORIGINALS[:4]  # on partition 1: taken and put back during the re-warm


def batch(seed: int, series: list[str], start_s: int, n: int = 300) -> TickColumns:
    """``n`` ticks a second apart from ``start_s`` over ``series`` (MOVED on partition 1)."""
    rng = np.random.default_rng(seed)
    names = [series[i] for i in rng.integers(0, len(series), n)]
    price = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    ticks = columns(names, [START + (start_s + k) * SECOND for k in range(n)], price.tolist())
    return replace(ticks, partition=np.array([n in MOVED for n in names], np.int32))


def warmed() -> Engine:
    engine = Engine(PARAMS_EVICTING, OLD)
    engine.process(batch(1, ORIGINALS, 0, n=600))  # every ring of 16 wraps
    engine.commit()
    assert sorted(engine.table.slot_of) == sorted(ORIGINALS)
    return engine


def boundary(engine: Engine, at: int, swap_at: int | None) -> Stepper | None:
    """Batch boundary ``at``: a reference swaps synchronously at ``swap_at``; the engine
    under test (``swap_at`` None) begins its swap at 0, then lets its re-warm finish what
    it has before each boundary, so that what each boundary hands over is known."""
    if swap_at is not None:
        if at == swap_at:
            engine.swap_model(NEW)
        return None
    if at == 0:
        engine.begin_swap(NEW)
        return None
    assert engine.rewarming is not None
    engine.rewarming.settle(timeout_s=60)
    return engine.continue_swap()


def scenario(swap_at: int | None) -> tuple[Engine, list[Stepper | None], list[str]]:
    """The engine after the scenario, what each boundary installed, and the versions that
    served its batches."""
    engine, installed, served = warmed(), [], []
    installed.append(boundary(engine, 0, swap_at))
    engine.put_partition(engine.take_partition(1))  # a rebalance: MOVED go and come back
    engine.process(batch(2, [*ORIGINALS, "N0", "N1"], 600))  # rolled back: N0, N1 never were
    engine.rollback()
    result = engine.process(batch(3, [*ORIGINALS, "N2", "N3"], 600))
    served.append(result.forecasts.model_version)
    engine.commit()
    installed.append(boundary(engine, 1, swap_at))  # copies MOVED, N2 and N3
    # 2,000 s later: the series not ticking now are evicted at its commit
    served.append(engine.process(batch(4, [*ORIGINALS[:8], "N2"], 2_600)).forecasts.model_version)
    engine.commit()
    installed.append(boundary(engine, 2, swap_at))
    served.append(engine.process(batch(5, [*ORIGINALS[:8], "N2"], 2_900)).forecasts.model_version)
    engine.commit()
    return engine, installed, served


def states(engine: Engine) -> dict[str, np.ndarray]:
    return {name: engine.table.recurrent[slot] for name, slot in engine.table.slot_of.items()}


def test_an_async_swap_installs_what_a_sync_swap_at_each_series_copy_would_hold() -> None:
    engine, installed, served = scenario(swap_at=None)
    assert [m.version if m else None for m in installed] == [None, None, "new"]
    assert served == ["old", "old", "new"]
    copied_at = {name: 1 if name in MOVED or name.startswith("N") else 0
                 for name in engine.table.slot_of}  # fmt: skip
    assert set(copied_at) == {*ORIGINALS[:8], "N2"}  # the others were evicted
    got, want = states(engine), [states(scenario(swap_at=k)[0]) for k in (0, 1)]
    for name, at in copied_at.items():
        np.testing.assert_allclose(got[name], want[at][name], atol=1e-6, err_msg=name)
    free = engine.table.uid == 0
    assert free.any() and (engine.table.recurrent[free] == 0).all()
    assert engine.rewarming is None and engine.model is NEW


def test_with_no_tick_meanwhile_an_async_swap_equals_a_sync_swap_at_install() -> None:
    sync, async_ = warmed(), warmed()
    sync.swap_model(NEW)
    switch_interval = sys.getswitchinterval()
    async_.begin_swap(NEW)
    assert sys.getswitchinterval() < switch_interval  # while the thread re-warms
    while async_.continue_swap() is None:  # boundaries without batches
        assert async_.rewarming is not None
        async_.rewarming.settle(timeout_s=60)
    want, got = table_state(sync), table_state(async_)
    np.testing.assert_allclose(got.pop("recurrent"), want.pop("recurrent"), atol=1e-6)  # type: ignore[arg-type]
    assert_same_state(got, want)
    np.testing.assert_array_equal(async_.table.calibration, sync.table.calibration)
    assert sys.getswitchinterval() == switch_interval


def test_series_put_back_over_themselves_are_rewarmed_again() -> None:
    engine, sync = warmed(), warmed()
    saved = engine.snapshot_partition(1)  # MOVED, as a checkpoint holds them
    engine.begin_swap(NEW)
    sync.swap_model(NEW)
    for each in (engine, sync):
        each.process(batch(6, ORIGINALS, 600))
        each.put_partition(saved)  # restored over the series held: same slots, same uids
    while engine.rewarming is not None:
        engine.rewarming.settle(timeout_s=60)
        engine.continue_swap()
    got = states(engine)
    for name, state in states(sync).items():
        np.testing.assert_allclose(got[name], state, atol=1e-6, err_msg=name)


def test_a_second_model_replaces_the_one_being_rewarmed() -> None:
    engine, sync = warmed(), warmed()
    engine.begin_swap(NEW)
    follow = batch(6, ORIGINALS, 600)
    engine.process(follow)
    engine.begin_swap(NEWER)  # commits the batch first; NEW's re-warm is dropped
    sync.process(follow)
    sync.swap_model(NEWER)
    assert engine.rewarming is not None and engine.rewarming.model is NEWER
    engine.rewarming.settle(timeout_s=60)
    assert engine.continue_swap() is NEWER
    got = states(engine)
    for name, state in states(sync).items():
        np.testing.assert_allclose(got[name], state, atol=1e-6, err_msg=name)


def test_a_sync_swap_drops_the_swap_begun() -> None:
    engine = warmed()
    engine.begin_swap(NEW)
    engine.swap_model(NEWER)
    assert engine.rewarming is None and engine.model is NEWER
    assert engine.continue_swap() is None and engine.model is NEWER


def test_a_stopping_service_stops_the_swap_and_its_thread() -> None:
    engine, switch_interval = warmed(), sys.getswitchinterval()
    engine.begin_swap(NEW)
    job = engine.rewarming
    assert isinstance(job, RewarmJob)
    engine.stop_background()
    assert engine.rewarming is None and engine.model is not NEW
    assert sys.getswitchinterval() == switch_interval
    steps = (np.array([0]), np.zeros(1), np.zeros(1), np.zeros(1, np.int64))
    with pytest.raises(RuntimeError, match="after shutdown"):  # its thread takes no more
        job.follow([steps])


class Raising(Stepper):
    """A model whose every step raises."""

    def __init__(self) -> None:
        super().__init__(NEW.spec, "raising", NEW.layers, NEW.head_kernel, NEW.head_bias)

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise ValueError("a broken candidate")


def test_a_rewarm_that_raises_drops_the_swap_and_the_old_model_serves_on() -> None:
    engine = warmed()
    engine.begin_swap(Raising())
    assert engine.rewarming is not None
    with pytest.raises(ValueError, match="a broken candidate"):
        engine.rewarming.settle(timeout_s=60)  # the thread's error
    assert engine.continue_swap() is None
    assert engine.rewarming is None
    assert engine.model is OLD
    assert engine.process(batch(7, ORIGINALS, 600)).forecasts.model_version == "old"
