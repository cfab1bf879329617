"""Engines for tests: small parameters, batches with faults in them, and the table's
state, copied, to compare before and after."""

import numpy as np

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.features import FeatureParams, model_inputs
from forecaster.core.ticks import TickColumns
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from tests.support.models import random_stepper
from tests.support.ticks import columns

PARAMS = EngineParams(features=FeatureParams(min_history=5), ring_length=16)
SECOND = 1_000_000_000
START = 1_767_600_000 * SECOND  # 2026-01-05 08:00 UTC


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


def table_state(engine: Engine) -> dict[str, object]:
    """Everything the engine's table holds, copied."""
    table = engine.table
    arrays = ("stats", "last_forecast", "recurrent", "ring", "ring_newest_ts", "ring_track_ts",
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
