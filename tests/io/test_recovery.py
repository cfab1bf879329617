"""Crash recovery: kill -9 at random points of a Kafka replay, restart, lose nothing.

The service (a random-weight model, so every warm tick is a model forecast that depends
on the recurrent state) consumes a few thousand ticks published in chunks; after each
chunk it is killed with SIGKILL once its forecasts reach a random count, and started
again. Its state comes back from the per-partition checkpoints (or, where none was
written yet, from consuming the partition again from its first offset). At the end
every tick has a forecast and every forecast, repeats included, equals the one an
uninterrupted run of the same engine over the same ticks makes. The same holds for a
service killed while a candidate is in shadow beside its serving model.

After each kill the test takes the dead member out of the group, as the coordinator
would when its session timed out: what is under test is the state the next service
restores, not how soon the broker notices a death (the scale-out test leaves its killed
member to time out), and the restart does not wait the session out.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.config import Settings
from forecaster.retraining.registry import Registry
from tests.support.kafka import (  # noqa: F401 (broker, kafka_client, settings: fixtures)
    WAIT_S,
    Key,
    broker,
    kafka_client,
    make_topics,
    on_both_clients,
    publish_input,
    settings,
)
from tests.support.recovery import (
    SEED,
    assert_as_uninterrupted,
    crash_settings,
    forecasts_until,
    forget_killed_member,
    keys_of,
    kill_9,
    start_service,
    tick_file,
    uninterrupted,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

KILLS = 7


def reach(config: Settings, count: int, service: Any, log: Path) -> None:
    seen = len(keys_of(forecasts_until(config, count, service)))
    assert service.is_alive(), f"the service died on its own; see {log}"
    assert seen >= count, f"{seen} of {count} forecasts in {WAIT_S} s; see {log}"


@on_both_clients
def test_kill_9_at_random_points_loses_nothing_and_changes_nothing(
    settings: Settings,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    settings = crash_settings(settings, state_dir=str(tmp_path / "state"))
    make_topics(settings)
    path = tick_file(tmp_path / "ticks.csv")
    expected = uninterrupted(settings, path)
    frame = pd.read_csv(path, dtype=str)
    bounds = np.linspace(0, len(frame), KILLS + 2).astype(int)
    chunks = [frame.iloc[start:end] for start, end in itertools.pairwise(bounds)]
    rng, log = random.Random(SEED), tmp_path / "service.log"
    published = 0
    for i, chunk in enumerate(chunks):
        chunk.to_csv(tmp_path / "chunk.csv", index=False)
        publish_input(settings, tmp_path / "chunk.csv")
        first, published = published + 1, published + len(chunk)
        service = start_service(settings, log)
        try:
            reach(settings, rng.randint(first, published) if i < KILLS else published, service, log)
        finally:  # a failed wait must not leave a service running past the test
            if service.is_alive():
                kill_9(service)
        forget_killed_member(settings, log)
    forecasts = forecasts_until(settings, published, None)

    assert keys_of(forecasts) == set(expected), "ticks without a forecast"
    assert_as_uninterrupted(forecasts, expected)  # repeats included
    text = log.read_text()
    assert "checkpoint of" in text and "restored at offset" in text, "no checkpoint restored"
    assert len(forecasts) > len(expected), "no kill landed between a checkpoint and a crash"


IN_SHADOW = "passed the gate: in shadow"


def in_shadow(log: Path) -> bool:
    """Whether the service logging to ``log`` has put a candidate into shadow."""
    return log.exists() and IN_SHADOW in log.read_text()


def test_kill_9_during_a_shadow_changes_no_forecast_and_the_shadow_restarts_with_a_new_run(
    settings: Settings,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """A service whose candidate is in shadow (it stays there: shadow_min_points is out of
    reach) is killed while the shadow steps beside the serving model. After the restart
    every tick has exactly the serving model's forecast, as an uninterrupted run has it,
    and the shadow is not resumed: it is not checkpointed (README, Shadow), the candidate
    is left in the registry without a verdict, and the next trigger trains anew and
    shadows its own candidate."""
    models = tmp_path / "models"
    settings = crash_settings(settings, state_dir=str(tmp_path / "state"), model_dir=str(models),
                              retrain_every_ticks=300, retrain_margin=-0.5, decay_window=0,
                              shadow_min_points=10**6, shadow_max_s=1e9)  # fmt: skip
    make_topics(settings)
    path = tick_file(tmp_path / "ticks.csv")
    expected = uninterrupted(settings, path)
    frame = pd.read_csv(path, dtype=str)
    thirds = np.linspace(0, len(frame), 4).astype(int)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    def publish(third: int) -> None:
        frame.iloc[thirds[third] : thirds[third + 1]].to_csv(tmp_path / "chunk.csv", index=False)
        publish_input(settings, tmp_path / "chunk.csv")

    publish(0)
    service = start_service(settings, logs[0], shadow=True)
    try:
        wait_for(lambda: in_shadow(logs[0]) or not service.is_alive(),
                 "the first candidate to go into shadow", WAIT_S)  # fmt: skip
        assert in_shadow(logs[0]), f"the service died on its own; see {logs[0]}"
        publish(1)
        killed_at = random.Random(SEED).randint(thirds[1] + 1, thirds[2])
        reach(settings, killed_at, service, logs[0])  # the shadow steps on these ticks
    finally:
        if service.is_alive():
            kill_9(service)
    forget_killed_member(settings, logs[0])
    (candidate,) = Registry(models).versions()
    assert "shadow" not in Registry(models).metadata(candidate)  # killed without a verdict

    publish(2)
    service = start_service(settings, logs[1], shadow=True)
    try:
        reach(settings, len(frame), service, logs[1])
        wait_for(lambda: in_shadow(logs[1]) or not service.is_alive(),
                 "the next trigger's candidate to go into shadow", WAIT_S)  # fmt: skip
    finally:
        if service.is_alive():
            kill_9(service)
    forecasts = forecasts_until(settings, len(frame), None)

    assert keys_of(forecasts) == set(expected), "ticks without a forecast"
    assert_as_uninterrupted(forecasts, expected)  # the serving model's, repeats included
    second = logs[1].read_text()
    assert "restored at offset" in second, "the restart restored no checkpoint"
    started = second.index("retraining started (trigger: ticks)")
    assert started < second.index(IN_SHADOW), "a shadow resumed without a new run"
    registry = Registry(models)
    assert registry.promoted() is None and registry.versions() == [candidate]  # trained anew
    assert "shadow" not in registry.metadata(candidate)
