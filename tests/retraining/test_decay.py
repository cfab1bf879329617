"""The decay trigger: a serving model whose live quality falls retrains itself, at most
once per cooldown of tick time, and a replay decides it as a live run would; after a
regime change it brings the service back to near the oracle."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.config import Settings
from forecaster.evaluation import synthetic
from forecaster.evaluation.scoring import mase
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import Pipeline
from forecaster.retraining.decay import DecayMonitor, DecayPolicy
from forecaster.retraining.registry import Registry
from forecaster.service import build_engine, csv_source, json_lines_sink
from tests.support.models import constant_stepper, random_stepper
from tests.support.retraining import fixed_fit, pipeline_over, retrainer_for
from tests.support.structure import write_regime_ticks

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


# The regime change: 12 series of 6,000 ticks whose structure changes at tick 1,500
# (tests/support/structure.py). A GRU of 16 units learns it in a few seconds.
REGIME = {"series": 12, "ticks": 6000, "change": 1500, "strength": 0.7}
REGIME_SETTINGS = Settings(
    cell="gru", layers=1, units=16, train_window=32, train_epochs=20, min_history=8,
    max_batch=500, bootstrap_steps=9600, ring_length=800, decay_window=1200,
    decay_margin=0.1, decay_cooldown_s=800.0, shadow_min_points=1200, shadow_max_s=600.0,
)  # fmt: skip


def replay_regime(
    ticks: Path, model_dir: Path, decay: bool
) -> tuple[dict[str, list[dict[str, Any]]], Metrics]:
    """Replay ``ticks`` as `forecaster replay` does (training inline), decay triggers on or
    off; each series' forecasts in tick order, and the replay's metrics."""
    settings = replace(REGIME_SETTINGS, model_dir=str(model_dir),
                       decay_window=REGIME_SETTINGS.decay_window if decay else 0)  # fmt: skip
    metrics = Metrics()
    engine, retrainer = build_engine(settings, metrics, background_training=False)
    out = model_dir.parent / f"forecasts-{decay}.jsonl"
    sink = json_lines_sink(settings, str(out), str(out.with_suffix(".rejects")))
    pipeline = Pipeline(csv_source(settings, ticks), engine, sink, metrics, updates=retrainer)
    while pipeline.step():
        pass
    sink.close()
    by_series: dict[str, list[dict[str, Any]]] = {}
    for line in out.read_text().splitlines():
        forecast = json.loads(line)
        by_series.setdefault(forecast["series"], []).append(forecast)
    return by_series, metrics


def last_quarter_mase(
    forecasts: dict[str, list[dict[str, Any]]], oracles: dict[str, np.ndarray]
) -> tuple[float, float]:
    """The MASE of the forecasts and of the oracle over each series' last quarter."""
    made, naive, oracle, actual = [], [], [], []
    for series, rows in forecasts.items():
        first = len(rows) * 3 // 4
        price = np.array([row["price"] for row in rows])
        made.append(np.array([row["forecast"] for row in rows])[first:-1])
        naive.append(price[first:-1])
        oracle.append(oracles[series][first:])
        actual.append(price[first + 1 :])
    made_, naive_, oracle_, actual_ = (np.concatenate(x) for x in (made, naive, oracle, actual))
    return mase(made_, naive_, actual_), mase(oracle_, naive_, actual_)


@pytest.mark.slow
def test_after_a_regime_change_decay_retrains_shadows_and_promotes_to_near_the_oracle(
    tmp_path: Path,
) -> None:
    """Decay is detected, a candidate is trained, shadowed and promoted, and over the
    last quarter the service is within 3 % of the oracle's MASE; without decay triggers
    the model of the old regime serves on, measurably worse (figures: README, Decay)."""
    ticks = tmp_path / "ticks.csv"
    oracles = write_regime_ticks(ticks, seed=3, **REGIME)
    forecasts, metrics = replay_regime(ticks, tmp_path / "models-on", decay=True)
    registry = Registry(tmp_path / "models-on")
    serving = registry.promoted()
    assert serving is not None and registry.metadata(serving)["shadow"]["promote"] is True
    triggers = metrics.registry.get_sample_value
    assert triggers("forecaster_retrain_triggers_total", {"trigger": "decay"}) >= 1
    assert {row["model_version"] for rows in forecasts.values()
            for row in rows[len(rows) * 3 // 4 :]} == {serving}  # fmt: skip
    with_decay, oracle = last_quarter_mase(forecasts, oracles)

    forecasts, metrics = replay_regime(ticks, tmp_path / "models-off", decay=False)
    decay_runs = metrics.registry.get_sample_value
    assert decay_runs("forecaster_retrain_triggers_total", {"trigger": "decay"}) == 0
    without_decay, _ = last_quarter_mase(forecasts, oracles)
    print(f"last-quarter MASE: oracle {oracle:.4f}, decay on {with_decay:.4f}, "
          f"decay off {without_decay:.4f}")  # fmt: skip
    assert with_decay <= 1.03 * oracle
    assert without_decay >= 1.1 * oracle and without_decay >= 1.05 * with_decay
