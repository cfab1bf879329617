"""A model in shadow: it never changes what the engine emits or holds, it is stepped once
per committed tick (a rolled-back batch does not move it), the shadow of the serving
model itself scores exactly the serving model's errors on the same ticks, and one that
raises is dropped without costing a served tick."""

from dataclasses import replace

import numpy as np
import pytest

from forecaster.core.engine import Engine, EngineParams, PairedErrors
from forecaster.model.spec import ModelSpec
from tests.support.engine import (
    PARAMS,
    Faulty,
    assert_same_state,
    messy_batches,
    seconds_batch,
    table_state,
)
from tests.support.models import random_stepper

SPEC = ModelSpec(cell="gru", layers=1, units=4)
SERVING = random_stepper(SPEC, seed=1, version="serving")
CANDIDATE = random_stepper(SPEC, seed=2, version="candidate")


def warmed(batches: int = 4, params: EngineParams = PARAMS) -> Engine:
    engine = Engine(params, SERVING)
    for batch in messy_batches(3, batches, 200, 12):
        engine.process(batch)
    engine.commit()
    return engine


def test_a_shadow_changes_nothing_the_engine_emits_or_holds() -> None:
    plain, shadowed = warmed(), warmed()
    shadowed.start_shadow(CANDIDATE)
    for batch in messy_batches(4, 5, 200, 14):  # two series are new to the shadow
        want, got = plain.process(batch), shadowed.process(batch)
        np.testing.assert_array_equal(got.forecasts.forecast, want.forecasts.forecast)
        assert got.forecasts.versions() == want.forecasts.versions()
        assert [r.index for r in got.rejects] == [r.index for r in want.rejects]
    plain.commit(), shadowed.commit()
    assert_same_state(table_state(shadowed), table_state(plain))
    assert shadowed.shadow is not None and len(shadowed.shadow.drain()) > 0


def test_a_rolled_back_batch_does_not_move_the_shadow() -> None:
    once, twice = warmed(), warmed()
    for engine in (once, twice):
        engine.start_shadow(CANDIDATE)
    batch = messy_batches(5, 1, 300, 12)[0]
    twice.process(batch)
    twice.rollback()
    for engine in (once, twice):
        engine.process(batch)
        engine.commit()
    assert once.shadow is not None and twice.shadow is not None
    want, got = once.shadow.drain(), twice.shadow.drain()
    np.testing.assert_array_equal(got.candidate, want.candidate)
    np.testing.assert_array_equal(twice.shadow.state.recurrent, once.shadow.state.recurrent)


def test_the_serving_model_in_its_own_shadow_scores_its_errors_exactly() -> None:
    # Rings long enough for every warm step: re-warming reproduces the serving state, to
    # the rings' 12-bit steps (forecaster.core.ring; the state within ~1e-3).
    engine = Engine(replace(PARAMS, ring_length=2000), SERVING)
    batches = messy_batches(6, 8, 250, 10)
    for batch in batches[:4]:
        engine.process(batch)
    engine.start_shadow(SERVING)
    scored = []
    for batch in batches[4:]:
        engine.process(batch)
        engine.commit()
        assert engine.shadow is not None
        scored.append(engine.shadow.drain())
    errors = PairedErrors.join(scored)
    assert len(errors) > 500
    np.testing.assert_allclose(errors.candidate, errors.serving, rtol=1e-3, atol=1e-12)
    assert not np.allclose(errors.serving, errors.naive)


def test_a_model_in_shadow_that_raises_is_dropped_and_costs_no_served_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = seconds_batch(8, 300, 6)
    plain, shadowed = warmed(), warmed()
    shadowed.start_shadow(Faulty(SPEC, [int(t) for t in batch.ts[::50]], fault="raise"))
    want, got = plain.process(batch), shadowed.process(batch)
    plain.commit()
    shadowed.commit()
    np.testing.assert_array_equal(got.forecasts.forecast, want.forecasts.forecast)
    assert_same_state(table_state(shadowed), table_state(plain))
    assert shadowed.shadow is None and "stepping the model in shadow" in caplog.text


def test_a_shadow_rewarmed_off_the_loop_steps_as_one_started_at_its_copy() -> None:
    """In the background the rings are copied at the first commit: a shadow started at
    once after that commit holds the same states from then on."""
    background = warmed(params=replace(PARAMS, rewarm_in_background=True))
    at_once = warmed()
    background.start_shadow(CANDIDATE)
    batches = messy_batches(6, 10, 200, 12)[4:]  # after the ticks of warmed()
    for engine in (background, at_once):
        engine.process(batches[0])
        engine.commit()  # the background's first chunk goes to its thread
    at_once.start_shadow(CANDIDATE)
    active = at_once.table.active_slots()
    for batch in batches[1:]:  # each compared at once: the states forget their start
        assert background.shadow is not None and at_once.shadow is not None
        if background.shadow.warming is not None:
            background.shadow.warming.settle(timeout_s=60)
        for engine in (background, at_once):
            engine.process(batch)
            engine.commit()
        assert background.shadow.warming is None  # installed at the first commit after
        np.testing.assert_allclose(background.shadow.state.recurrent[active],
                                   at_once.shadow.state.recurrent[active], atol=1e-6)  # fmt: skip
    assert len(background.shadow.drain()) > 0
    np.testing.assert_array_equal(background.table.active_slots(), active)
