"""Crash recovery: kill -9 at random points of a Kafka replay, restart, lose nothing.

The service (a random-weight model, so every warm tick is a model forecast that depends
on the recurrent state) consumes a few thousand ticks published in chunks; after each
chunk it is killed with SIGKILL once its forecasts reach a random count, and started
again. Its state comes back from the per-partition checkpoints (or, where none was
written yet, from consuming the partition again from its first offset). At the end
every tick has a forecast and every forecast, repeats included, equals the one an
uninterrupted run of the same engine over the same ticks makes.

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
