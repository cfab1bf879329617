"""Crash recovery: kill -9 at random points of a Kafka replay, restart, lose nothing.

The service (a random-weight model, so every warm tick is a model forecast that depends
on the recurrent state) consumes a few thousand ticks published in chunks; after each
chunk it is killed with SIGKILL once its forecasts reach a random count, and started
again. Its state comes back from the per-partition checkpoints (or, where none was
written yet, from consuming the partition again from its first offset). At the end
every tick has a forecast and every forecast, repeats included, equals the one an
uninterrupted run of the same engine over the same ticks makes.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import random
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.config import Settings
from forecaster.core.ticks import parse_csv_frame
from forecaster.io.records import format_rfc3339
from tests.io import recovery_service
from tests.io.test_kafka import (  # noqa: F401 (broker, settings: fixtures)
    WAIT_S,
    Key,
    broker,
    make_topics,
    publish_input,
    settings,
    wait_for,
)
from tests.support.broker import read_topic

pytestmark = pytest.mark.kafka

KILLS = 7
SERIES, TICKS_PER_SERIES = 12, 200
SEED = 20261121

Forecast = tuple[float, str]  # value, model version


def tick_file(path: Path) -> Path:
    """SERIES random walks, interleaved in time order, epoch-millisecond timestamps."""
    rng = np.random.default_rng(SEED)
    rows = []
    for s in range(SERIES):
        prices = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.01, TICKS_PER_SERIES)))
        start = 1_767_225_600_000 + s * 7
        rows += [(f"S{s:02d}", start + t * 1000, p) for t, p in enumerate(prices)]
    frame = pd.DataFrame(rows, columns=["series", "ts", "price"]).sort_values("ts")
    frame.to_csv(path, index=False)
    return path


def uninterrupted(config: Settings, path: Path) -> dict[Key, Forecast]:
    """The forecasts of one engine that steps every tick once, never stopped."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    engine = recovery_service.serving_engine(config)
    forecasts = engine.process(parse_csv_frame(frame).ticks).forecasts
    keys = zip(forecasts.ticks.series, format_rfc3339(forecasts.ticks.ts), strict=True)
    values = zip(forecasts.forecast.tolist(), forecasts.versions(), strict=True)
    return dict(zip(keys, values, strict=True))


def forecasts_until(config: Settings, count: int, service: Any) -> list[dict[str, Any]]:
    """The forecast topic, read from the beginning until it holds ``count`` distinct
    (series, ts) or the service is gone."""

    def done(records: list[Any]) -> bool:
        distinct = keys_of([json.loads(record.value) for record in records])
        return len(distinct) >= count or not (service is None or service.is_alive())

    records = read_topic(config.bootstrap_servers, config.output_topic, done, WAIT_S)
    return [json.loads(record.value) for record in records]


def keys_of(forecasts: list[dict[str, Any]]) -> set[Key]:
    return {(f["series"], f["ts"]) for f in forecasts}


def start_service(config: Settings, log: Path) -> Any:
    """A fork of a forkserver that has imported the service, not of this process: the
    test's own client threads must not be forked mid-lock."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.io.recovery_service"])
    process = context.Process(target=recovery_service.run, args=(config, log), daemon=True)
    process.start()
    return process


def kill_9(process: Any) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join(WAIT_S)
    assert process.exitcode == -signal.SIGKILL


def reach(config: Settings, count: int, service: Any, log: Path) -> None:
    seen = len(keys_of(forecasts_until(config, count, service)))
    assert service.is_alive(), f"the service died on its own; see {log}"
    assert seen >= count, f"{seen} of {count} forecasts in {WAIT_S} s; see {log}"


def crash_settings(base: Settings, **overrides: Any) -> Settings:
    """A service killed and restarted often: small batches, frequent checkpoints, a short
    history, a session that lets the group notice a dead member within seconds."""
    return replace(base, checkpoint_interval_s=0.3, poll_max_records=40, min_history=8,
                   ring_length=16, evict_ttl_s=0.0, session_timeout_ms=2000,
                   heartbeat_interval_ms=300, **overrides)  # fmt: skip


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
    forecasts = forecasts_until(settings, published, None)

    assert keys_of(forecasts) == set(expected), "ticks without a forecast"
    for forecast in forecasts:  # repeats included
        value, version = expected[(forecast["series"], forecast["ts"])]
        assert forecast["model_version"] == version, forecast
        assert abs(forecast["forecast"] - value) <= 1e-6, (forecast, value)
    text = log.read_text()
    assert "checkpoint of" in text and "restored at offset" in text, "no checkpoint restored"
    assert len(forecasts) > len(expected), "no kill landed between a checkpoint and a crash"
