"""Scale-out: instances of one group share the partitions; state follows a partition
through the Kafka changelog when an instance dies (kill -9) or another joins.

Three instances replay a multi-series stream published in chunks; after the first
chunk one of them is killed, after the second a fourth joins. Each partition's series
state moves only through the changelog topic (no instance has a state directory). At the
end every tick has a forecast, and every forecast, repeats included, equals the one a
single uninterrupted engine makes: no instance stepped a series from state other than
exactly the state at the offset it resumed from.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.config import Settings
from tests.support.broker import create_topics
from tests.support.kafka import (  # noqa: F401 (broker, kafka_client, settings: fixtures)
    broker,
    kafka_client,
    on_both_clients,
    publish_input,
    settings,
)
from tests.support.recovery import (
    assert_as_uninterrupted,
    crash_settings,
    forecasts_until,
    keys_of,
    kill_9,
    start_service,
    tick_file,
    uninterrupted,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 6
RESTORED = re.compile(r"partition \d+ assigned: checkpoint of \d+ series restored at offset (\d+)")


def published(config: Settings, frame: pd.DataFrame, folder: Path) -> int:
    frame.to_csv(folder / "chunk.csv", index=False)
    publish_input(config, folder / "chunk.csv")
    return len(frame)


@on_both_clients
def test_three_instances_one_killed_one_joining_forecast_as_one_uninterrupted_engine(
    settings: Settings,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    config = replace(
        crash_settings(settings, state_store="kafka"),
        changelog_topic=f"{settings.input_topic}.state",
        session_timeout_ms=3000,
    )
    create_topics(config.bootstrap_servers,
                  {config.input_topic: PARTITIONS, config.output_topic: PARTITIONS,
                   config.dlq_topic: 1})  # fmt: skip
    path = tick_file(tmp_path / "ticks.csv")
    expected = uninterrupted(config, path)
    frame = pd.read_csv(path, dtype=str)
    bounds = np.linspace(0, len(frame), 4).astype(int)
    chunks = [frame.iloc[start:end] for start, end in itertools.pairwise(bounds)]
    logs = [tmp_path / f"instance-{i}.log" for i in range(4)]
    instances: list[Any] = []
    try:
        instances += [start_service(config, log) for log in logs[:3]]
        total = published(config, chunks[0], tmp_path)
        forecasts_until(config, total, None)
        kill_9(instances[0])  # holds some partitions: a survivor must take their state over
        total += published(config, chunks[1], tmp_path)
        forecasts_until(config, total, None)
        instances.append(start_service(config, logs[3]))  # takes some partitions over
        total += published(config, chunks[2], tmp_path)
        forecasts = forecasts_until(config, total, None)
        assert all(instance.is_alive() for instance in instances[1:]), "an instance died"
    finally:
        for instance in instances:
            if instance.is_alive():
                kill_9(instance)

    assert keys_of(forecasts) == set(expected), "ticks without a forecast"
    assert_as_uninterrupted(forecasts, expected)  # repeats included
    taken_over = [int(offset) for log in logs[1:] for offset in RESTORED.findall(log.read_text())]
    assert any(offset > 0 for offset in taken_over), "no state came through the changelog"
