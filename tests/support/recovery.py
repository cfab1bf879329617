"""Crash-recovery test support: a tick file of random walks, the forecasts of an
uninterrupted engine over it, and the service started in a forkserver child and killed."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from forecaster.config import Settings
from forecaster.core.ticks import parse_csv_frame
from forecaster.io.records import format_rfc3339
from tests.support import recovery_service
from tests.support.broker import read_topic, remove_group_member
from tests.support.kafka import WAIT_S, Key, KeysRead

SERIES, TICKS_PER_SERIES = 12, 200
SEED = 20261121
# kafka-python's line for the member id the coordinator gave a joining consumer
MEMBER_ID = re.compile(r"Received member id (\S+) for group ")


class Forecast(NamedTuple):
    """What an uninterrupted engine forecast for one tick."""

    value: float
    lower: float
    upper: float
    version: str


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
    values = zip(
        forecasts.forecast.tolist(),
        forecasts.lower.tolist(),
        forecasts.upper.tolist(),
        forecasts.versions(),
        strict=True,
    )
    return {key: Forecast(*value) for key, value in zip(keys, values, strict=True)}


def assert_as_uninterrupted(forecasts: list[dict[str, Any]], expected: dict[Key, Forecast]) -> None:
    """Every forecast, repeats included, is the uninterrupted engine's for its tick: same
    model version, value and interval within 1e-6."""
    for forecast in forecasts:
        want = expected[(forecast["series"], forecast["ts"])]
        assert forecast["model_version"] == want.version, forecast
        got = (forecast["forecast"], forecast["lower"], forecast["upper"])
        assert np.allclose(got, (want.value, want.lower, want.upper), rtol=0, atol=1e-6), (
            forecast,
            want,
        )


def forecasts_until(config: Settings, count: int, service: Any) -> list[dict[str, Any]]:
    """The forecast topic, read from the beginning until it holds ``count`` distinct
    (series, ts) or the service is gone."""

    keys = KeysRead()

    def done(records: list[Any]) -> bool:
        return len(keys.of(records)) >= count or not (service is None or service.is_alive())

    records = read_topic(config.bootstrap_servers, config.output_topic, done, WAIT_S)
    return [json.loads(record.value) for record in records]


def keys_of(forecasts: list[dict[str, Any]]) -> set[Key]:
    return {(f["series"], f["ts"]) for f in forecasts}


def start_service(config: Settings, log: Path, shadow: bool = False) -> Any:
    """A fork of a forkserver that has imported the service, not of this process: the
    test's own client threads must not be forked mid-lock. ``shadow``: the service
    retrains, and its candidates go into shadow (``recovery_service.run_with_shadow``)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.support.recovery_service"])
    process = context.Process(target=recovery_service.run, args=(config, log, shadow),
                              daemon=True)  # fmt: skip
    process.start()
    return process


def kill_9(process: Any) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join(WAIT_S)
    assert process.exitcode == -signal.SIGKILL


def forget_killed_member(config: Settings, log: Path) -> None:
    """Remove the group member a killed service was (the last member id its log names),
    as the coordinator does once its session times out: the next service then joins at
    once instead of joining beside the dead member and rejoining when it expires."""
    members = MEMBER_ID.findall(log.read_text())
    assert members, f"the service never joined its group; see {log}"
    remove_group_member(config.bootstrap_servers, config.group_id, members[-1])


def crash_settings(base: Settings, **overrides: Any) -> Settings:
    """A service killed and restarted often: small batches, frequent checkpoints, a short
    history, a session that lets the group notice a dead member within seconds."""
    return replace(base, checkpoint_interval_s=0.3, poll_max_records=40, min_history=8,
                   ring_length=16, evict_ttl_s=0.0, session_timeout_ms=2000,
                   heartbeat_interval_ms=300, **overrides)  # fmt: skip
