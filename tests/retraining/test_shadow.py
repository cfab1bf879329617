"""Shadow: a candidate that passed the gate is scored on the live stream beside the serving
model, never emitted, and promoted only if it is better there, significantly.

The stream (tests/support/structure.py) has structure that only a model can serve: its
next return is an even function of the last one, which the per-series linear head
cannot learn, so a model that knows it serves better than one that does not, even
after calibration. Runs are inline replays, so their verdicts fall at data-clock points.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from forecaster.config import Settings
from forecaster.core.engine import PairedErrors
from forecaster.core.features import FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.ops.metrics import Metrics
from forecaster.retraining.coordinator import Retrainer
from forecaster.retraining.decay import DecayPolicy
from forecaster.retraining.events import EventSink, RetrainEvent
from forecaster.retraining.registry import Registry
from forecaster.retraining.shadow import ShadowPolicy, ShadowTrial
from forecaster.retraining.sharing import retrain_lock
from forecaster.retraining.trainer import NamedFit
from forecaster.service import build_engine
from forecaster.timestamps import rfc3339_ns
from tests.support.models import constant_stepper, random_stepper
from tests.support.retraining import SMALL, fixed_fit, pipeline_over, retrainer_for
from tests.support.retrains import runs_by_outcome
from tests.support.structure import even_stepper, write_even_ticks
from tests.support.waiting import probe_until, wait_for

STRENGTH = 0.6
REQUESTED_AFTER = 12  # batches of 250 ticks: 300 per series in the rings
SHADOW = ShadowPolicy(min_points=1500, max_s=10_000)


@pytest.fixture(scope="module")
def even_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten series of 800 ticks with structure only a model can serve."""
    path = tmp_path_factory.mktemp("even") / "ticks.csv"
    write_even_ticks(path, series=10, ticks=800, strength=STRENGTH, seed=1)
    return path


def replay(
    ticks: Path, out: Path, serving: Stepper, candidate: Stepper, margin: float,
    *, events: EventSink | None = None,
) -> tuple[Retrainer, Registry, list[dict[str, object]]]:  # fmt: skip
    """Replay ``ticks`` serving ``serving``; a run, requested part-way, fits ``candidate``."""
    registry = Registry(out.parent / "models")
    retrainer = retrainer_for(serving, fixed_fit(candidate), registry, margin=margin,
                              shadow=SHADOW, decay=DecayPolicy(window=0),
                              events=events)  # fmt: skip
    pipeline = pipeline_over(ticks, retrainer, out)
    batches = 0
    while pipeline.step():
        batches += 1
        if batches == REQUESTED_AFTER:
            retrainer.request()
    forecasts = [json.loads(line) for line in out.read_text().splitlines()]
    return retrainer, registry, forecasts


def outcomes(retrainer: Retrainer, name: str) -> dict[str, float | None]:
    registry = retrainer.metrics.registry
    labels = (
        ("promoted", "rejected", "shadowed") if name == "retrains" else ("promoted", "rejected")
    )
    return {
        o: registry.get_sample_value(f"forecaster_{name}_total", {"outcome": o}) for o in labels
    }


def test_a_candidate_worse_on_live_data_is_rejected_in_shadow_and_never_emitted(
    even_ticks: Path, tmp_path: Path
) -> None:
    # A model of another process (random weights: it knows nothing of this one) passes a
    # lenient gate (margin -0.5: 1.5 x naive and serving MAE), but not its shadow.
    stranger = random_stepper(ModelSpec(cell="gru", layers=1, units=4), seed=1, version="x")
    serving = even_stepper(STRENGTH, "serving")
    retrainer, registry, forecasts = replay(even_ticks, tmp_path / "f.jsonl", serving,
                                            stranger, margin=-0.5)  # fmt: skip
    (version,) = registry.versions()
    metadata = registry.metadata(version)
    assert metadata["validation"]["promote"] is True  # it passed the holdout gate
    shadow = metadata["shadow"]
    assert shadow["promote"] is False and shadow["points"] >= SHADOW.min_points
    assert shadow["candidate_mase"] > shadow["serving_mase"] and shadow["p_value"] > 0.5
    assert outcomes(retrainer, "retrains") == {"promoted": 0, "rejected": 0, "shadowed": 1}
    assert outcomes(retrainer, "shadow_verdicts") == {"promoted": 0, "rejected": 1}
    assert {f["model_version"] for f in forecasts} == {"naive", "serving"}  # not one of its
    assert registry.promoted() is None and retrainer.engine.shadow is None


def test_the_replay_tells_its_trigger_outcome_and_shadow_verdict_at_their_tick_times(
    even_ticks: Path, tmp_path: Path
) -> None:
    """What the backtest marks on its rolling-error plot (forecaster.retraining.events)."""
    stranger = random_stepper(ModelSpec(cell="gru", layers=1, units=4), seed=1, version="x")
    events: list[RetrainEvent] = []
    _, registry, forecasts = replay(even_ticks, tmp_path / "f.jsonl", even_stepper(STRENGTH, "s"),
                                    stranger, margin=-0.5, events=events.append)  # fmt: skip
    (version,) = registry.versions()
    assert [(e.kind, e.what, e.version) for e in events] == [
        ("trigger", "manual", ""), ("run", "shadowed", version), ("shadow", "rejected", version)
    ]  # fmt: skip
    assert [event.rejection for event in events] == [False, False, True]
    stamps = sorted(rfc3339_ns(str(forecast["ts"])) for forecast in forecasts)
    # A run asked for after the 12th batch starts at the next boundary, the one step 8
    # reaches once the 13th batch is polled, at the 12th batch's last tick; an inline run
    # ends where it starts.
    assert events[0].ts == events[1].ts == stamps[REQUESTED_AFTER * 250 - 1]
    shadowed = registry.metadata(version)["shadow"]["points"]
    assert stamps.index(events[2].ts) >= REQUESTED_AFTER * 250 + shadowed - 1


def test_a_candidate_better_on_live_data_is_promoted_after_its_shadow(
    even_ticks: Path, tmp_path: Path
) -> None:
    spec = ModelSpec(cell="gru", layers=1, units=2)
    retrainer, registry, forecasts = replay(
        even_ticks, tmp_path / "f.jsonl", constant_stepper(spec, 0.0, "serving"),
        even_stepper(STRENGTH, "knows"), margin=0.01,
    )  # fmt: skip
    version = registry.promoted()
    assert version is not None
    shadow = registry.metadata(version)["shadow"]
    assert shadow["promote"] is True and shadow["p_value"] < SHADOW.significance
    assert shadow["candidate_mase"] < 0.99 * shadow["serving_mase"] and shadow["dm_statistic"] < 0
    versions = [f["model_version"] for f in forecasts if f["model_version"] != "naive"]
    first = versions.index(version)  # it serves from a batch boundary after its shadow
    assert set(versions[:first]) == {"serving"} and set(versions[first:]) == {version}
    shadowed_ticks = (REQUESTED_AFTER * 250) + shadow["points"]
    assert len(forecasts) - len(versions[first:]) >= shadowed_ticks  # never during it
    assert outcomes(retrainer, "shadow_verdicts") == {"promoted": 1, "rejected": 0}


def test_two_replays_with_a_shadow_give_identical_forecasts(
    even_ticks: Path, tmp_path: Path
) -> None:
    spec = ModelSpec(cell="gru", layers=1, units=2)
    outputs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        out = tmp_path / run / "f.jsonl"
        replay(even_ticks, out, constant_stepper(spec, 0.0, "serving"),
               even_stepper(STRENGTH, "knows"), margin=0.01)  # fmt: skip
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and b'"model_version": "serving"' in outputs[0]


def errors(candidate: float, serving: float, n: int, seed: int = 0) -> PairedErrors:
    """Paired absolute errors around the given means, naive's at 1."""
    noise = np.random.default_rng(seed).normal(0, 0.05, (2, n))
    return PairedErrors(candidate + noise[0], serving + noise[1], np.ones(n))


def test_a_trial_decides_on_min_points_by_margin_and_significance() -> None:
    policy = ShadowPolicy(min_points=200, max_s=60, significance=0.05)
    better = ShadowTrial("v", policy, margin=0.01, started_ts=0)
    better.observe(errors(0.8, 0.9, 100))
    assert better.verdict(newest_ts=1) is None  # 100 of 200 points, time left
    better.observe(errors(0.8, 0.9, 100, seed=1))
    verdict = better.verdict(newest_ts=1)
    assert verdict is not None and verdict.promote and verdict.points == 200
    close = ShadowTrial("v", policy, margin=0.2, started_ts=0)  # better, not by 20 %
    close.observe(errors(0.8, 0.9, 200))
    assert (ruled := close.verdict(1)) is not None and not ruled.promote
    assert "is not below 0.8 x serving" in ruled.reason


def test_a_trial_without_enough_points_by_max_s_is_rejected_with_its_figures() -> None:
    trial = ShadowTrial("v", ShadowPolicy(min_points=200, max_s=60), 0.01, started_ts=10**9)
    trial.observe(errors(0.5, 0.9, 50))
    assert trial.verdict(newest_ts=60 * 10**9) is None  # 59 s in
    verdict = trial.verdict(newest_ts=61 * 10**9)
    assert verdict is not None and not verdict.promote and verdict.seconds == 60.0
    assert verdict.points == 50 and verdict.reason == "only 50 of 200 forecasts scored in 60 s"
    assert verdict.candidate_mase == pytest.approx(0.5, abs=0.02)


def test_one_instance_decides_a_shadow_holding_the_retrain_lock_and_the_others_follow(
    even_ticks: Path, tmp_path: Path
) -> None:
    """Two live instances on one registry: the one whose run made the candidate shadows it
    and decides, holding the lock, so the other's run is skipped meanwhile; the other
    takes the promotion up from the registry."""
    features = FeatureParams(min_history=SMALL["min_history"])
    registry = Registry(tmp_path / "models")
    first = constant_stepper(ModelSpec(cell="gru", layers=1, units=2), 0.0, "first")
    serving = registry.load(registry.save(first, features, {}), features).stepper
    registry.promote(serving.version)
    fit = NamedFit("tests.support.training_fits:even", {"strength": STRENGTH})
    deciding, other = (
        retrainer_for(serving, fit, registry, background=True, shadow=SHADOW,
                      decay=DecayPolicy(window=0), registry_poll_s=0.01)
        for _ in range(2)
    )  # fmt: skip
    pipeline = pipeline_over(even_ticks, deciding, tmp_path / "f.jsonl")
    for _ in range(REQUESTED_AFTER):
        pipeline.step()
    deciding.request()
    wait_for(lambda: deciding.pending() is None and not deciding.running, "the run to end")
    assert deciding.engine.shadow is not None  # its candidate is in shadow
    assert retrain_lock(registry.root) is None  # held by the deciding instance
    other.request()
    assert other.pending() is None and runs_by_outcome(other)["skipped"] == 1
    while deciding.engine.shadow is not None and pipeline.step():
        pass
    promoted = registry.promoted()
    assert promoted != serving.version and registry.metadata(promoted)["shadow"]["promote"]
    lock = retrain_lock(registry.root)
    assert lock is not None  # released with the verdict
    lock.release()
    taken_up = probe_until(other.pending, lambda model: model is not None, deadline_s=30.0)
    assert taken_up is not None and taken_up.version == promoted


def test_a_restart_during_a_shadow_serves_the_promoted_model_and_drops_the_shadow(
    even_ticks: Path, tmp_path: Path
) -> None:
    """The shadow is not checkpointed: a restarted service serves the promoted model and
    no candidate is in shadow; the candidate stays in the registry without a verdict."""
    features = FeatureParams(min_history=SMALL["min_history"])
    registry = Registry(tmp_path / "models")
    first = constant_stepper(ModelSpec(cell="gru", layers=1, units=2), 0.0, "first")
    serving = registry.load(registry.save(first, features, {}), features).stepper
    registry.promote(serving.version)
    endless = ShadowPolicy(min_points=10**6, max_s=10**6)
    retrainer = retrainer_for(serving, fixed_fit(even_stepper(STRENGTH, "knows")), registry,
                              shadow=endless, decay=DecayPolicy(window=0))  # fmt: skip
    pipeline = pipeline_over(even_ticks, retrainer, tmp_path / "f.jsonl")
    for _ in range(REQUESTED_AFTER):
        pipeline.step()
    retrainer.request()
    pipeline.step()
    assert retrainer.engine.shadow is not None  # in shadow when the process dies
    settings = Settings(model_dir=str(registry.root), **SMALL)  # type: ignore[arg-type]
    engine, _ = build_engine(settings, Metrics(), background_training=False)
    assert engine.model is not None and engine.model.version == serving.version
    assert engine.shadow is None and registry.promoted() == serving.version
    (candidate,) = [v for v in registry.versions() if v != serving.version]
    assert "shadow" not in registry.metadata(candidate)


def test_a_run_asked_for_during_a_shadow_waits_for_its_verdict(
    even_ticks: Path, tmp_path: Path
) -> None:
    spec = ModelSpec(cell="gru", layers=1, units=2)
    retrainer = retrainer_for(constant_stepper(spec, 0.0, "serving"),
                              fixed_fit(even_stepper(STRENGTH, "knows")), shadow=SHADOW,
                              decay=DecayPolicy(window=0))  # fmt: skip
    pipeline = pipeline_over(even_ticks, retrainer, tmp_path / "f.jsonl")
    triggers = retrainer.metrics.registry.get_sample_value
    for _ in range(REQUESTED_AFTER):
        pipeline.step()
    retrainer.request()
    pipeline.step()
    assert retrainer.engine.shadow is not None
    retrainer.request()  # a second candidate: it waits
    while retrainer.engine.shadow is not None:
        assert triggers("forecaster_retrain_triggers_total", {"trigger": "manual"}) == 1
        assert pipeline.step(), "the shadow ended before the stream did"
    assert outcomes(retrainer, "shadow_verdicts") == {"promoted": 1, "rejected": 0}
    assert triggers("forecaster_retrain_triggers_total", {"trigger": "manual"}) == 1
    pipeline.step()  # the promoted model is swapped in; the waiting run starts after it
    assert triggers("forecaster_retrain_triggers_total", {"trigger": "manual"}) == 2
    assert outcomes(retrainer, "retrains") == {"promoted": 0, "rejected": 1, "shadowed": 1}
