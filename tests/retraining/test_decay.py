"""The decay trigger: a serving model whose live quality falls retrains itself, at most
once per cooldown of tick time, and a replay decides it as a live run would."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.evaluation import synthetic
from forecaster.model.spec import ModelSpec
from forecaster.retraining.decay import DecayMonitor, DecayPolicy
from tests.support.models import constant_stepper, random_stepper
from tests.support.retraining import fixed_fit, pipeline_over, retrainer_for

SPEC = ModelSpec(cell="gru", layers=1, units=4)


def monitor(
    window: int = 4, limit: float = 1.0, margin: float = 0.1, cooldown: float = 60.0
) -> DecayMonitor:
    return DecayMonitor(DecayPolicy(window, limit, margin, cooldown))


def feed(decay: DecayMonitor, model_error: float, naive_error: float, n: int) -> None:
    """``n`` scored forecasts at price 100 whose errors are the given shares of it."""
    before = np.full(n, 100.0)
    price = before * (1 + naive_error)
    forecast = price + before * model_error
    decay.observe(price, before, forecast)


def test_the_live_mase_is_taken_over_the_last_window_of_scored_forecasts() -> None:
    decay = monitor(window=4)
    feed(decay, 0.01, 0.01, 3)
    assert math.isnan(decay.mase()) and not decay.due(1)  # the window is not full yet
    feed(decay, 0.01, 0.01, 1)
    assert decay.mase() == pytest.approx(1.0)
    feed(decay, 0.005, 0.01, 4)  # the older forecasts leave the window
    assert decay.mase() == pytest.approx(0.5)
    decay.observe(np.array([101.0]), np.array([100.0]), np.array([0.0]))  # naive: not scored
    assert decay.mase() == pytest.approx(0.5)


def test_decay_is_worse_than_naive_or_worse_than_the_holdout_by_the_margin() -> None:
    decay = monitor(window=2, limit=1.0, margin=0.1)
    feed(decay, 0.0095, 0.01, 2)  # MASE 0.95: better than naive
    assert not decay.due(1)
    decay.restart(holdout_mase=0.8)  # 0.95 is more than 10 % worse than 0.8
    feed(decay, 0.0095, 0.01, 2)
    assert decay.due(2)
    decay.restart(holdout_mase=0.9)
    feed(decay, 0.0095, 0.01, 2)
    assert not decay.due(3)  # within 10 % of its holdout


def test_a_decay_run_waits_out_the_cooldown_on_tick_time() -> None:
    decay = monitor(window=2, cooldown=60.0)
    feed(decay, 0.02, 0.01, 2)
    second = 1_000_000_000
    assert decay.due(100 * second)
    assert not decay.due(159 * second)
    assert decay.due(160 * second)
    assert not monitor(window=0).due(10**18)  # window 0: no decay trigger


@pytest.fixture(scope="module")
def ar_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("decay") / "ticks.csv"
    synthetic.write_ticks_csv(synthetic.generate(synthetic.SERIES_SETS["ar1"], 500, seed=12), path)
    return path


def replay_with_decay(ticks: Path, out: Path, window: int, cooldown_s: float) -> float:
    """Replay ``ticks`` under a model judged against a MASE it cannot reach (0.5); returns
    how many decay runs started."""
    policy = DecayPolicy(window=window, mase_limit=0.5, margin=0.0, cooldown_s=cooldown_s)
    serving = constant_stepper(SPEC, 0.0, "v-serving")
    retrainer = retrainer_for(serving, fixed_fit(random_stepper(SPEC, seed=3)), decay=policy)
    pipeline = pipeline_over(ticks, retrainer, out)
    while pipeline.step():
        pass
    pipeline.sink.close()
    runs = retrainer.metrics.registry.get_sample_value(
        "forecaster_retrain_triggers_total", {"trigger": "decay"}
    )
    return runs or 0.0


def test_a_decaying_model_retrains_once_per_cooldown_and_replays_decide_alike(
    ar_ticks: Path, tmp_path: Path
) -> None:
    ts = pd.to_datetime(pd.read_csv(ar_ticks)["ts"])
    span_s = (ts.max() - ts.min()).total_seconds()
    cooldown_s = span_s / 4
    runs = replay_with_decay(ar_ticks, tmp_path / "a.jsonl", 200, cooldown_s)
    assert 2 <= runs <= span_s // cooldown_s + 1
    again = replay_with_decay(ar_ticks, tmp_path / "b.jsonl", 200, cooldown_s)
    assert again == runs
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert replay_with_decay(ar_ticks, tmp_path / "c.jsonl", 0, cooldown_s) == 0
