"""Retraining: the gate, the swap at a batch boundary, failures, triggers, replay determinism,
live runs in a child process (promoted, crashed, killed, timed out, stopped), instances
sharing one registry (one retraining at a time, every instance serving the promoted
version), and a registry that cannot be written or holds tampered records (the run
fails or is skipped, the service goes on). What a run came to is read from the
service's metrics (tests/support/retrains.py), the registry and the log.

Only the first test trains with Keras (a tiny model on a stream with learnable
structure); the others hand the Retrainer NumPy candidates, good, bad or broken; the
child processes run the NumPy fits of tests/support/training_fits.py by name.
"""

import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from forecaster import cli
from forecaster.config import Settings
from forecaster.core.engine import NAIVE, Engine
from forecaster.core.features import FeatureParams
from forecaster.errors import ArtifactError, ConfigError, TrainingError
from forecaster.evaluation import synthetic
from forecaster.io.files import CsvSource
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.ops.http import HttpServer, http_app
from forecaster.ops.metrics import Metrics
from forecaster.params import engine_params
from forecaster.retraining import registry as registry_module
from forecaster.retraining.coordinator import Retrainer, RetrainPolicy
from forecaster.retraining.dataset import Sequence
from forecaster.retraining.feed import StepFeed
from forecaster.retraining.registry import PROMOTED_FILE, Registry
from forecaster.retraining.sharing import RETRAIN_STARTED_FILE, last_retrain_start, retrain_lock
from forecaster.retraining.trainer import NamedFit, TrainedModel
from forecaster.retraining.triggers import DataClock, Schedule
from forecaster.service import build_engine
from tests.support import retrain_instance
from tests.support.models import constant_stepper, random_stepper
from tests.support.paths import SAMPLE_TICKS
from tests.support.retraining import SMALL, Fit, fixed_fit, pipeline_over, retrainer_for
from tests.support.retrains import holdout_mae, last_run, only, runs, runs_by_outcome
from tests.support.waiting import wait_for

SPEC = ModelSpec(cell="gru", layers=1, units=4)


@pytest.fixture(scope="module")
def ar_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten AR(1) series (phi 0.5: next return half the last one, plus noise), 500 ticks each."""
    path = tmp_path_factory.mktemp("ar") / "ticks.csv"
    synthetic.write_ticks_csv(synthetic.generate(synthetic.SERIES_SETS["ar1"], 500, seed=11), path)
    return path


@pytest.fixture(scope="module")
def short_ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of stream, 240 ticks per series (10 hours), for NumPy candidates."""
    path = tmp_path_factory.mktemp("short") / "ticks.csv"
    synthetic.write_ticks_csv(synthetic.generate(synthetic.SERIES_SETS["ar1"], 240, seed=11), path)
    return path


def read_forecasts(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def live_retrainer(serving: Stepper | None, fit: NamedFit, registry: Registry | None = None,
                   warm_on: Path | None = None, **policy: object) -> Retrainer:  # fmt: skip
    """A live Retrainer: each run in a child process, ``fit`` rebuilt there by name."""
    return retrainer_for(serving, fit, registry, warm_on, background=True, **policy)


def collect(retrainer: Retrainer, seconds: float = 300.0) -> Stepper | None:
    """Poll like the pipeline at its batch boundaries until the live run is over."""
    deadline = time.monotonic() + seconds
    while (model := retrainer.pending()) is None and retrainer.running:
        assert time.monotonic() < deadline, f"the run did not end within {seconds:g} s"
        time.sleep(0.05)
    return model


def hang(started: Path, ignore_sigterm: bool = False) -> NamedFit:
    params = {"started": str(started), "ignore_sigterm": ignore_sigterm}
    return NamedFit("tests.support.training_fits:hang", params)


def logged(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    """The messages logged so far that start with ``start``."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_learnable_stream_promotes_a_model_that_beats_naive_swapped_at_one_boundary(
    ar_ticks: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 8 epochs reach a holdout MASE of 0.92 here (29 reach 0.85): well inside the 0.98 bar.
    caplog.set_level(logging.INFO, logger="forecaster.retraining")
    settings = Settings(
        model_dir=str(tmp_path / "models"), cell="gru", layers=1, units=8, train_window=32,
        train_epochs=8, bootstrap_steps=3000, retrain_interval_s=0, retrain_margin=0.02,
        **SMALL,  # type: ignore[arg-type]
    )  # fmt: skip
    engine, retrainer = build_engine(settings, Metrics(), background_training=False)
    first_model = engine.model  # a local: asserting on engine.model would narrow it for good
    assert first_model is None
    pipeline = pipeline_over(ar_ticks, retrainer, tmp_path / "f.jsonl")
    replayed = synthetic.generate(synthetic.SERIES_SETS["ar1"], 500, seed=11)
    swapped_at = None
    received = 0
    while pipeline.step():
        if engine.model is not None and swapped_at is None:
            swapped_at = received  # the model swapped in at step 8 stepped this batch
            # A fresh engine serving the new model from the first tick has stepped every
            # warm step with it; the swapped engine re-warmed from its rings (which hold
            # every step before this batch): the states must agree, to what the rings keep
            # of the features (z and d within 0.002, forecaster/core/ring.py: 9e-4 apart).
            fresh = Engine(engine_params(settings), engine.model)
            source = CsvSource(ar_ticks, pipeline.totals.received)
            fresh.process(source.poll(0.0).parse().ticks)  # type: ignore[union-attr]
            slots = engine.table.active_slots()
            names = [engine.table.series[s] for s in slots.tolist()]
            fresh_slots = np.array([fresh.table.slot_of[n] for n in names])
            np.testing.assert_allclose(
                engine.table.recurrent[slots], fresh.table.recurrent[fresh_slots], atol=3e-3
            )
        received = pipeline.totals.received
    pipeline.sink.close()

    assert runs_by_outcome(retrainer) == only(promoted=1)
    run = last_run(retrainer)
    version = run["version"]
    assert run == {"trigger": "bootstrap", "outcome": "promoted", "version": version}
    assert engine.model is not None
    registry = Registry(tmp_path / "models")
    assert registry.promoted() == version == engine.model.version
    metadata = registry.metadata(version)
    assert metadata["validation"]["promote"] is True
    assert metadata["validation"]["candidate_mase"] < 1 - settings.retrain_margin
    assert metadata["validation"]["candidate_mae"] == holdout_mae(retrainer, "candidate")
    assert metadata["data_window"]["series"] == 10
    assert metadata["train_params"]["sequence_length"] == 32

    forecasts = read_forecasts(tmp_path / "f.jsonl")
    assert len(forecasts) == len(replayed) == pipeline.totals.accepted
    versions = [f["model_version"] for f in forecasts]
    first = versions.index(version)
    assert first == swapped_at and first % SMALL["max_batch"] == 0
    assert set(versions[:first]) == {NAIVE}
    assert set(versions[first:]) == {version}
    # The log says when the run started, why, and what serves after it.
    assert "retraining started (trigger: bootstrap) while the naive forecast serves" in caplog.text
    assert f"retraining promoted {version} after " in caplog.text
    assert f"model {version} serves from the next batch" in caplog.text
    assert "serving None" not in caplog.text


def test_a_deliberately_worse_candidate_is_rejected_and_serving_is_unchanged(
    short_ticks: Path, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "models")
    serving = registry.load(
        registry.save(constant_stepper(SPEC, 0.0, "zero"), FeatureParams(min_history=8), {}),
        FeatureParams(min_history=8),
    ).stepper
    registry.promote(serving.version)
    worse = constant_stepper(SPEC, 3.0, "always-up")  # forecasts +3 scales every tick
    retrainer = retrainer_for(serving, fixed_fit(worse), registry, every_ticks=1000)
    engine = retrainer.engine
    pipeline = pipeline_over(short_ticks, retrainer, tmp_path / "f.jsonl")
    while runs(retrainer) == 0:  # the first run's figures (the second saves the same version)
        assert pipeline.step()
    first = last_run(retrainer)
    candidate_mae, naive_mae = holdout_mae(retrainer, "candidate"), holdout_mae(retrainer, "naive")
    pipeline.run(threading.Event())
    pipeline.sink.close()

    assert runs_by_outcome(retrainer) == only(rejected=2)
    assert first["outcome"] == "rejected" and candidate_mae > naive_mae
    assert engine.model is serving and registry.promoted() == serving.version
    rejected = registry.metadata(first["version"])
    assert rejected["validation"]["promote"] is False
    assert rejected["validation"]["candidate_mae"] == candidate_mae
    versions = {f["model_version"] for f in read_forecasts(tmp_path / "f.jsonl")}
    assert versions == {NAIVE, serving.version}


def raising(sequences: list[Sequence]) -> TrainedModel:
    raise TrainingError("training diverged (loss [nan])")


def crashing(sequences: list[Sequence]) -> TrainedModel:
    raise MemoryError("out of memory")


@pytest.mark.parametrize(
    "fit",
    [raising, crashing, fixed_fit(constant_stepper(SPEC, float("nan"), "nan-weights"))],
    ids=["nan-loss", "exception", "nan-forecasts"],
)
def test_a_training_that_raises_or_yields_nan_leaves_serving_untouched(
    fit: Fit, short_ticks: Path, tmp_path: Path
) -> None:
    serving = random_stepper(SPEC, seed=5, version="serving")
    retrainer = retrainer_for(serving, fit, every_ticks=1000)
    pipeline = pipeline_over(short_ticks, retrainer, tmp_path / "f.jsonl")
    pipeline.run(threading.Event())
    pipeline.sink.close()
    assert runs_by_outcome(retrainer) == only(failed=2)
    assert retrainer.engine.model is serving
    assert {f["model_version"] for f in read_forecasts(tmp_path / "f.jsonl")} == {
        NAIVE,
        "serving",
    }


def test_a_live_retraining_promotes_a_candidate_fitted_and_judged_in_a_child_process(
    short_ticks: Path, tmp_path: Path
) -> None:
    features = FeatureParams(min_history=8)
    registry = Registry(tmp_path / "models")
    always_up = constant_stepper(SPEC, 3.0, "always-up")
    serving = registry.load(registry.save(always_up, features, {}), features).stepper
    registry.promote(serving.version)
    fit = NamedFit("tests.support.training_fits:constant", {"value": 0.0, "units": SPEC.units})
    # margin -0.5: the zero forecast (as good as naive) beats 1.5 x naive and always-up.
    retrainer = live_retrainer(serving, fit, registry, warm_on=short_ticks, margin=-0.5)
    engine = retrainer.engine
    retrainer.request()
    assert retrainer.pending() is None
    training = retrainer.execution.training
    assert training is not None
    child, folder = training.process, training.directory
    swapped = collect(retrainer)

    assert runs_by_outcome(retrainer) == only(promoted=1) and swapped is not None
    version = last_run(retrainer)["version"]
    assert version == swapped.version
    assert registry.promoted() == version and registry.history() == [serving.version]
    metadata = registry.metadata(version)
    assert metadata["fitted_by_pid"] == child.pid != os.getpid()
    assert metadata["validation"]["serving_mae"] > metadata["validation"]["candidate_mae"]
    assert metadata["data_window"]["series"] == 10
    assert child.returncode == 0 and not folder.exists() and not retrainer.running
    assert engine.model is serving  # the pipeline swaps, at its next batch boundary


@pytest.mark.parametrize("failure", ["raises", "killed"])
def test_a_training_process_that_raises_or_is_killed_fails_and_serving_is_untouched(
    failure: str, short_ticks: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serving = random_stepper(SPEC, seed=5, version="serving")
    started = tmp_path / "started"
    # The real trainer's entry point, given a spec no model can have: raises in the child.
    invalid = NamedFit(
        "forecaster.retraining.trainer:fit_trainer", {"spec": {"units": 0}, "features": {}}
    )
    fit = invalid if failure == "raises" else hang(started)
    retrainer = live_retrainer(serving, fit, warm_on=short_ticks)
    retrainer.request()
    assert retrainer.pending() is None
    training = retrainer.execution.training
    assert training is not None
    if failure == "killed":
        wait_for(started.exists, "training start")
        os.kill(training.pid, signal.SIGKILL)
    assert collect(retrainer) is None

    (failure_logged,) = logged(caplog, "retraining failed")
    expected = {"raises": "code 1: ConfigError: units must be 1-1024", "killed": "code -9"}
    assert expected[failure] in failure_logged
    assert runs_by_outcome(retrainer) == only(failed=1)
    assert retrainer.engine.model is serving and not retrainer.running


def test_a_live_retraining_past_its_timeout_is_killed_and_serving_continues(
    short_ticks: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serving = random_stepper(SPEC, seed=5, version="serving")
    started = tmp_path / "started"
    fit = hang(started, ignore_sigterm=True)
    retrainer = live_retrainer(serving, fit, warm_on=short_ticks, timeout_s=0.05)
    retrainer.request()
    assert retrainer.pending() is None
    training = retrainer.execution.training
    assert training is not None
    child = training.process
    wait_for(started.exists, "training start")  # deaf to SIGTERM from here on
    assert collect(retrainer) is None  # past its timeout: terminated, then killed

    (failure,) = logged(caplog, "retraining failed")
    assert runs_by_outcome(retrainer) == only(failed=1) and "timed out after 0.05 s" in failure
    assert child.returncode == -signal.SIGKILL
    assert not retrainer.running and retrainer.engine.model is serving


def test_stop_ends_a_running_training_process(short_ticks: Path, tmp_path: Path) -> None:
    serving = random_stepper(SPEC, seed=5, version="serving")
    started = tmp_path / "started"
    retrainer = live_retrainer(serving, hang(started), warm_on=short_ticks)  # never finishes
    retrainer.request()
    retrainer.pending()
    training = retrainer.execution.training
    assert training is not None
    child, folder = training.process, training.directory
    wait_for(started.exists, "training start")
    # In a session of its own: Ctrl-C or `timeout` signalling the service's group misses it.
    assert os.getsid(child.pid) == child.pid != os.getsid(0)
    retrainer.stop()
    assert child.returncode == -signal.SIGTERM
    assert not retrainer.running and not folder.exists() and runs(retrainer) == 0


def test_a_signal_to_the_service_group_while_the_child_starts_does_not_end_it(
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.group_signal", str(started)],
        capture_output=True, text=True, timeout=600, start_new_session=True, check=True,
    )  # fmt: skip
    assert run.stdout.split() == ["survived", "stopped", str(-signal.SIGTERM)], run.stderr


def test_a_live_retrainer_needs_a_fit_a_child_process_can_rebuild() -> None:
    with pytest.raises(ConfigError, match="NamedFit"):
        live_retrainer(None, raising)  # type: ignore[arg-type]


def test_the_engine_must_record_into_the_retrainers_feed() -> None:
    engine = Engine(engine_params(Settings(**SMALL)))  # type: ignore[arg-type]
    feed = StepFeed(bootstrap_steps=100, first_model=True)
    with pytest.raises(ConfigError, match="feed"):
        Retrainer(engine, feed, raising, RetrainPolicy(), FeatureParams(), metrics=Metrics(),
                  background=False)  # fmt: skip


def test_two_replays_retrain_at_the_same_data_clock_points_and_forecast_identically(
    short_ticks: Path, tmp_path: Path
) -> None:
    def fit(sequences: list[Sequence]) -> TrainedModel:
        steps = sum(len(s) for s in sequences)  # a different model for different data
        return TrainedModel(random_stepper(SPEC, seed=steps, version=f"fit-{steps}"), {})

    replays = []
    for replay in range(2):
        serving = random_stepper(SPEC, seed=5, version="serving")
        # margin -0.99: any candidate short of 100x worse than naive is taken.
        retrainer = retrainer_for(serving, fit, interval_s=2 * 3600, margin=-0.99)
        pipeline = pipeline_over(short_ticks, retrainer, tmp_path / f"{replay}.jsonl")
        pipeline.run(threading.Event())
        pipeline.sink.close()
        replays.append(read_forecasts(tmp_path / f"{replay}.jsonl"))
        promoted = runs(retrainer, "promoted")
        assert promoted >= 1 and runs_by_outcome(retrainer) == only(promoted=promoted)
    assert replays[0] == replays[1]
    first_seen: dict[object, int] = {}
    for row, forecast in enumerate(replays[0]):
        first_seen.setdefault(forecast["model_version"], row)
    swaps = [row for version, row in first_seen.items() if version not in (NAIVE, "serving")]
    assert len(swaps) >= 3
    assert all(row % SMALL["max_batch"] == 0 for row in swaps)


def test_the_data_clock_fires_once_per_interval_of_tick_time_and_on_cron() -> None:
    hour = 3600 * 10**9
    start = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) * 10**9
    clock = DataClock(Schedule(interval_s=3600))
    fired = [t for t in range(0, 10 * hour, hour // 4) if clock.due(start + t)]
    assert fired == [k * hour for k in range(1, 10)]
    assert not DataClock(Schedule(interval_s=3600)).due(start + 5 * hour)  # first sight
    cron = DataClock(Schedule(cron="0 */6 * * *"))
    fired = [t for t in range(0, 24 * hour, hour // 2) if cron.due(start + 10**9 + t)]
    assert [t // hour for t in fired] == [6, 12, 18]


def test_the_interval_trigger_and_a_post_to_retrain_start_runs(tmp_path: Path) -> None:
    serving = random_stepper(SPEC, seed=5, version="serving")
    candidate = fixed_fit(constant_stepper(SPEC, 0.0, "candidate"))
    retrainer = retrainer_for(serving, candidate, interval_s=0.2)  # inline: triggers under test
    sample = CsvSource(SAMPLE_TICKS, 3000).poll(0.0)
    retrainer.engine.process(sample.parse().ticks)  # type: ignore[union-attr]

    def pend_until_runs(count: int) -> None:
        deadline = time.monotonic() + 60
        while runs(retrainer) < count and time.monotonic() < deadline:
            retrainer.pending()
            time.sleep(0.01)
        assert runs(retrainer) >= count

    retrainer.start()
    try:
        pend_until_runs(1)
    finally:
        retrainer.stop()
    assert last_run(retrainer)["trigger"] == "interval"
    app = http_app(Metrics().registry, lambda: (True, ""), retrainer.request, admin_token="s3")
    server = HttpServer(app, "127.0.0.1", 0).start()
    try:
        done = runs(retrainer)
        url = f"http://127.0.0.1:{server.port}"
        assert cli.main(["retrain", "--url", url]) == 1  # no admin token: refused
        retrainer.pending()
        assert runs(retrainer) == done
        assert cli.main(["retrain", "--url", url, "--token", "s3"]) == 0
        pend_until_runs(done + 1)
    finally:
        server.stop()
    assert last_run(retrainer)["trigger"] == "manual"
    assert runs(retrainer, "rejected") == runs(retrainer)  # zero == naive: no gain


def test_instances_on_one_registry_retrain_one_at_a_time_and_skip_while_another_does(
    short_ticks: Path, tmp_path: Path
) -> None:
    (tmp_path / "runs").mkdir()
    registry = tmp_path / "models"
    holder = retrain_instance.instance(registry, short_ticks, tmp_path)  # this process
    holder.request()
    assert holder.pending() is None and holder.running  # its fit waits for "proceed"
    names = ["b", "c"]
    command = [sys.executable, "-m", "tests.support.retrain_instance"]
    args = [str(registry), str(short_ticks), str(tmp_path)]
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in names}
    others = [subprocess.Popen([*command, *args, name], stderr=logs[name]) for name in names]
    try:
        outcome_files = [tmp_path / f"{name}.outcomes" for name in names]
        wait_for(lambda: all(path.exists() for path in outcome_files), "both others skipped")
        (tmp_path / "proceed").touch()
        collect(holder)
        for name, other in zip(names, others, strict=True):
            assert other.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()
    finally:
        holder.stop()
        for name, other in zip(names, others, strict=True):
            other.kill()
            other.wait()
            logs[name].close()

    assert runs_by_outcome(holder) == only(rejected=1)  # zero == naive: no gain
    for name in names:
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["outcomes"] and set(report["outcomes"]) == {"skipped"}
        assert report["skipped"] == len(report["outcomes"])
    # Three instances asked while the holder's run lasted: one fit ran, to its end.
    (run,) = [json.loads(path.read_text()) for path in (tmp_path / "runs").iterdir()]
    assert run["end"] > run["start"]


def test_a_scheduled_run_is_skipped_while_another_instance_retrains_or_just_did(
    short_ticks: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="forecaster.retraining")
    registry = Registry(tmp_path / "models")
    fit = NamedFit("tests.support.training_fits:constant", {"value": 0.0, "units": SPEC.units})
    first, second = (
        live_retrainer(
            random_stepper(SPEC, seed=5),
            fit,
            registry,
            warm_on=short_ticks,
            interval_s=3600,
            registry_poll_s=0,
        )
        for _ in range(2)
    )
    first.schedule_fired()
    assert first.pending() is None and first.running
    second.schedule_fired()
    second.pending()  # first holds the lock
    collect(first)
    second.schedule_fired()
    second.pending()  # first started a run less than 0.9 x 3600 s ago
    held, recent = logged(caplog, "retraining skipped")  # only second's runs were skipped
    assert held == "retraining skipped: another instance holds the retrain lock"
    assert re.fullmatch(r"retraining skipped: a retraining run started \d+ s ago", recent)
    assert runs_by_outcome(second) == only(skipped=2) and not second.running
    assert runs_by_outcome(first) == only(rejected=1)  # zero == naive: no gain
    second.request()  # a manual request does not wait for the schedule's period
    second.pending()
    assert second.running
    second.stop()
    assert retrain_lock(registry.root) is not None  # stop released it


def test_every_instance_serves_what_another_promotes_or_rolls_back_within_its_poll(
    short_ticks: Path, tmp_path: Path
) -> None:
    features = FeatureParams(min_history=8)
    registry = Registry(tmp_path / "models")
    first = registry.load(registry.save(random_stepper(SPEC, seed=5), features, {}), features)
    registry.promote(first.stepper.version)
    fit = NamedFit("tests.support.training_fits:constant", {"value": 0.0, "units": SPEC.units})
    # margin -0.99: any candidate short of 100x worse than naive is taken.
    retrainers = [
        live_retrainer(first.stepper, fit, registry, margin=-0.99, registry_poll_s=0.2)
        for _ in range(3)
    ]
    pipelines = []
    for index, retrainer in enumerate(retrainers):
        pipeline = pipeline_over(short_ticks, retrainer, tmp_path / f"{index}.jsonl")
        pipeline.source = CsvSource(short_ticks, 50, rate=1000.0, loop=True)
        pipelines.append(pipeline)

    def step_until(condition: Callable[[], bool], what: str) -> None:
        def stepped() -> bool:
            for pipeline in pipelines:
                pipeline.step()
            return condition()

        wait_for(stepped, what, deadline_s=120)

    def serving() -> set[str]:
        return {p.engine.model.version for p in pipelines}  # type: ignore[union-attr]

    step_until(lambda: pipelines[0].totals.accepted >= 1000, "data to train on")
    retrainers[0].request()
    step_until(lambda: registry.promoted() != first.stepper.version, "the promotion")
    step_until(lambda: serving() == {registry.promoted()}, "every instance on the promoted")
    assert runs_by_outcome(retrainers[0]) == only(promoted=1)
    assert runs(retrainers[1]) == runs(retrainers[2]) == 0

    registry.rollback()  # an operator, on any instance
    step_until(lambda: serving() == {first.stepper.version}, "every instance rolled back")
    for retrainer, pipeline in zip(retrainers, pipelines, strict=True):
        retrainer.stop()
        pipeline.sink.close()


# --- a registry that cannot be written, or holds tampered records -----------------------------


def beneath_a_file(tmp_path: Path) -> Registry:
    """A registry that cannot be written, for root too: its directory's parent is a file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    return Registry(blocker / "models")


def test_a_model_dir_that_cannot_be_written_fails_each_run_and_the_replay_goes_on(
    short_ticks: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serving = random_stepper(SPEC, seed=5, version="serving")
    good = fixed_fit(constant_stepper(SPEC, 0.0, "candidate"))
    retrainer = retrainer_for(serving, good, beneath_a_file(tmp_path), every_ticks=1000,
                              margin=-0.99)  # fmt: skip
    pipeline = pipeline_over(short_ticks, retrainer, tmp_path / "f.jsonl")
    pipeline.run(threading.Event())
    pipeline.sink.close()

    assert runs_by_outcome(retrainer) == only(failed=2) and retrainer.engine.model is serving
    assert pipeline.totals.received == 2400  # every tick of the file
    assert len(read_forecasts(tmp_path / "f.jsonl")) == pipeline.totals.accepted
    first, _ = logged(caplog, "retraining failed")
    assert "\n" not in first
    assert re.search(r"ArtifactError: cannot save model version gru-\w+ in .*: Not a directory",
                     first)  # fmt: skip


def test_a_full_disk_fails_the_run_and_the_next_one_promotes_once_there_is_room(
    short_ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    write_atomically = registry_module.write_atomically
    refused: list[Path] = []

    def full_once(path: Path, data: bytes) -> None:
        if not refused:
            refused.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        write_atomically(path, data)

    monkeypatch.setattr(registry_module, "write_atomically", full_once)
    good = fixed_fit(constant_stepper(SPEC, 0.0, "candidate"))
    registry = Registry(tmp_path / "models")
    retrainer = retrainer_for(random_stepper(SPEC, seed=5), good, registry, every_ticks=1000,
                              margin=-0.99)  # fmt: skip
    pipeline_over(short_ticks, retrainer, tmp_path / "f.jsonl").run(threading.Event())

    # Failed, then promoted: the last run promoted.
    assert runs_by_outcome(retrainer) == only(failed=1, promoted=1)
    promoted = last_run(retrainer)
    assert promoted["outcome"] == "promoted"
    (failure,) = logged(caplog, "retraining failed")
    assert "cannot save model version" in failure and "No space left on device" in failure
    assert registry.promoted() == promoted["version"] == retrainer.engine.model.version  # type: ignore[union-attr]


def test_a_live_run_that_cannot_take_the_lock_or_record_its_start_fails_and_releases(
    short_ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    fit = NamedFit("tests.support.training_fits:constant", {"value": 0.0, "units": SPEC.units})
    serving = random_stepper(SPEC, seed=5)
    unlockable = live_retrainer(serving, fit, beneath_a_file(tmp_path), warm_on=short_ticks)
    unlockable.request()
    assert unlockable.pending() is None and not unlockable.running  # the poll raised nothing
    (failure,) = logged(caplog, "retraining failed")
    assert runs_by_outcome(unlockable) == only(failed=1)
    assert failure.startswith("retraining failed (cannot open the retrain lock")

    def no_space(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(registry_module, "write_atomically", no_space)
    registry = Registry(tmp_path / "models")
    full = live_retrainer(serving, fit, registry, warm_on=short_ticks)
    full.request()
    assert full.pending() is None and not full.running
    _, failure = logged(caplog, "retraining failed")
    start_record = registry.root / RETRAIN_STARTED_FILE
    assert f"(cannot write {start_record}: No space left on device)" in failure
    assert runs_by_outcome(full) == only(failed=1)
    lock = retrain_lock(registry.root)
    assert lock is not None  # released by the failed run
    lock.release()


def test_a_registry_that_cannot_be_pruned_still_promotes(
    short_ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def read_only(self: Registry, keep: int) -> list[str]:
        raise ArtifactError("cannot delete model version gru-x: Read-only file system")

    monkeypatch.setattr(Registry, "prune", read_only)
    good = fixed_fit(constant_stepper(SPEC, 0.0, "candidate"))
    retrainer = retrainer_for(random_stepper(SPEC, seed=5), good, Registry(tmp_path / "models"),
                              warm_on=short_ticks, margin=-0.99)  # fmt: skip
    retrainer.request()
    assert retrainer.pending() is not None
    assert runs_by_outcome(retrainer) == only(promoted=1)
    assert "cannot prune the model registry: cannot delete model version gru-x" in caplog.text


def test_a_tampered_promotion_is_not_taken_up_and_is_logged_once(
    short_ticks: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    features = FeatureParams(min_history=8)
    registry = Registry(tmp_path / "models")
    v0, v1 = (registry.save(random_stepper(SPEC, seed=seed), features, {}) for seed in (0, 1))
    registry.promote(v0)
    fit = NamedFit("tests.support.training_fits:constant", {"value": 0.0, "units": SPEC.units})
    retrainer = live_retrainer(registry.load(v0, features).stepper, fit, registry,
                               warm_on=short_ticks, registry_poll_s=0.01)  # fmt: skip
    (registry.root / PROMOTED_FILE).write_text(json.dumps({"version": "../../evil"}))
    for _ in range(5):
        assert retrainer.pending() is None
        time.sleep(0.02)
    assert caplog.text.count("cannot take up the promoted model") == 1
    assert "'../../evil' is not a model version name" in caplog.text

    registry.promote(v1)  # an operator's promotion replaces the tampered record
    time.sleep(0.02)
    taken = retrainer.pending()
    assert taken is not None and taken.version == v1


@pytest.mark.parametrize("record", ["{not json", '{"started": 1e300}'], ids=["garbled", "future"])
def test_a_bad_retrain_start_record_does_not_block_scheduled_runs(
    record: str, short_ticks: Path, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "models")
    registry.root.mkdir()
    (registry.root / RETRAIN_STARTED_FILE).write_text(record)
    retrainer = live_retrainer(random_stepper(SPEC, seed=5), hang(tmp_path / "started"),
                               registry, warm_on=short_ticks, interval_s=3600,
                               registry_poll_s=0)  # fmt: skip
    retrainer.schedule_fired()
    retrainer.pending()
    try:
        assert retrainer.running and runs(retrainer) == 0
        assert abs(last_retrain_start(registry.root) - time.time()) < 60  # type: ignore[operator]
    finally:
        retrainer.stop()
