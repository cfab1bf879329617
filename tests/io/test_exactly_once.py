"""Exactly once: kill -9, a rebalance or a zombie never make a committed forecast or dead
letter appear twice, and never change one.

The service runs with ``processing_guarantee = "exactly_once"`` and the changelog state
store; what it delivered is read as a ``read_committed`` consumer does
(``tests.support.transactions``: Tansu 0.6.0 needs the markers applied by the reader).
Every forecast is compared with an uninterrupted engine's, as in the kill -9 test of
``test_recovery``, and every (series, ts) and every dead letter must appear exactly once.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.config import Settings
from tests.support.broker import create_topics
from tests.support.kafka import (  # noqa: F401 (broker, settings: fixtures)
    WAIT_S,
    Key,
    broker,
    publish_input,
    settings,
)
from tests.support.recovery import (
    SEED,
    assert_as_uninterrupted,
    crash_settings,
    forget_killed_member,
    kill_9,
    start_service,
    tick_file,
    uninterrupted,
)
from tests.support.transactions import read_committed
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

KILLS = 6
BAD_ROWS = 16
PARTITIONS = 4


def exactly_once_settings(base: Settings, **overrides: Any) -> Settings:
    """A service killed often, delivering exactly once, with checkpoints rarer than its
    transactions so that every restart steps ticks again without emitting them."""
    return replace(
        crash_settings(base, state_store="kafka", processing_guarantee="exactly_once"),
        changelog_topic=f"{base.input_topic}.state",
        checkpoint_interval_s=1.5,
        **overrides,
    )


def ticks_with_bad_rows(folder: Path) -> pd.DataFrame:
    """The random walks of ``tick_file`` with BAD_ROWS rows of negative prices among them."""
    frame = pd.read_csv(tick_file(folder / "ticks.csv"), dtype=str)
    rng = np.random.default_rng(SEED)
    bad = frame.sample(BAD_ROWS, random_state=rng).assign(price="-3.5")
    bad["ts"] = (bad["ts"].astype(np.int64) + 1).astype(str)  # their own ts: no duplicates
    rows = pd.concat([frame, bad]).sort_values("ts", kind="stable").reset_index(drop=True)
    rows.to_csv(folder / "ticks.csv", index=False)
    return rows


def make_topics(config: Settings) -> None:
    create_topics(config.bootstrap_servers, {config.input_topic: PARTITIONS,
                                             config.output_topic: PARTITIONS,
                                             config.dlq_topic: 1})  # fmt: skip


def committed_forecasts(config: Settings, count: int, service: Any = None) -> list[dict[str, Any]]:
    """The committed forecasts, read until there are ``count`` or ``service`` is gone."""

    def done(records: list[Any]) -> bool:
        return len(records) >= count or (service is not None and not service.is_alive())

    records = read_committed(config.bootstrap_servers, config.output_topic, done, WAIT_S)
    return [json.loads(record.value) for record in records]


def committed_dead_letters(config: Settings, count: int) -> list[Any]:
    return read_committed(config.bootstrap_servers, config.dlq_topic,
                          lambda records: len(records) >= count, WAIT_S)  # fmt: skip


def keys_once(forecasts: list[dict[str, Any]]) -> set[Key]:
    """The (series, ts) of ``forecasts``, asserting none appears twice."""
    keys = [(f["series"], f["ts"]) for f in forecasts]
    repeated = [key for key, n in pd.Series(keys).value_counts().items() if n > 1]
    assert not repeated, f"{len(repeated)} forecasts repeated, e.g. {repeated[:3]}"
    return set(keys)


def origins_once(letters: list[Any]) -> set[tuple[int, int]]:
    """Where each dead letter came from, asserting no input record has two."""
    origins = []
    for letter in letters:
        headers = dict(letter.headers)
        origins.append((int(headers["forecaster.source.partition"]),
                        int(headers["forecaster.source.offset"])))  # fmt: skip
    assert len(set(origins)) == len(origins), "a dead letter repeated"
    return set(origins)


def publish_frame(config: Settings, frame: pd.DataFrame, folder: Path) -> None:
    frame.to_csv(folder / "chunk.csv", index=False)
    publish_input(config, folder / "chunk.csv")


def test_kill_9_repeatedly_gives_every_forecast_and_dead_letter_exactly_once(
    settings: Settings,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    config = exactly_once_settings(settings)
    make_topics(config)
    frame = ticks_with_bad_rows(tmp_path)
    expected = uninterrupted(config, tmp_path / "ticks.csv")
    bounds = np.linspace(0, len(frame), KILLS + 2).astype(int)
    rng, log = random.Random(SEED), tmp_path / "service.log"
    valid = 0
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        chunk = frame.iloc[start:end]
        publish_frame(config, chunk, tmp_path)
        first, valid = valid + 1, valid + int((chunk["price"] != "-3.5").sum())
        service = start_service(config, log)
        try:
            target = rng.randint(first, valid) if i < KILLS else valid
            committed_forecasts(config, target, service)
            assert service.is_alive(), f"the service died on its own; see {log}"
        finally:
            if service.is_alive():
                kill_9(service)
        forget_killed_member(config, log)
    forecasts = committed_forecasts(config, valid)
    letters = committed_dead_letters(config, BAD_ROWS)

    assert keys_once(forecasts) == set(expected), "ticks without a forecast"
    assert_as_uninterrupted(forecasts, expected)
    assert len(origins_once(letters)) == BAD_ROWS
    assert "without emitting" in log.read_text(), "no restart stepped ticks again silently"


def test_a_zombie_paused_past_its_session_cannot_commit_for_partitions_taken_over(
    settings: Settings,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """The first instance is stopped (SIGSTOP) in the middle of its work, the second takes
    every partition after the first's session expired, and then the first is resumed
    (SIGCONT): whatever it still sends is fenced, and every forecast appears once."""
    config = exactly_once_settings(settings, session_timeout_ms=3000)
    make_topics(config)
    frame = ticks_with_bad_rows(tmp_path)
    expected = uninterrupted(config, tmp_path / "ticks.csv")
    half = len(frame) // 2
    publish_frame(config, frame.iloc[:half], tmp_path)
    logs = [tmp_path / "zombie.log", tmp_path / "survivor.log"]
    zombie = start_service(config, logs[0])
    survivor = None
    try:
        committed_forecasts(config, half // 4, zombie)
        zombie_pid = zombie.pid
        signal_process(zombie_pid, signal.SIGSTOP)
        survivor = start_service(config, logs[1])
        wait_for(lambda: "partitions assigned: [0, 1, 2, 3]" in logs[1].read_text(),
                 "the survivor to take every partition", WAIT_S)  # fmt: skip
        publish_frame(config, frame.iloc[half:], tmp_path)
        signal_process(zombie_pid, signal.SIGCONT)
        valid = int((frame["price"] != "-3.5").sum())
        forecasts = committed_forecasts(config, valid, survivor)
        wait_for(lambda: "lost" in logs[0].read_text() or "fenced" in logs[0].read_text()
                 or "failed" in logs[0].read_text(), "the zombie to notice", WAIT_S)  # fmt: skip
        forecasts = committed_forecasts(config, valid + 1, survivor)  # all, and any extra
    finally:
        for process in (zombie, survivor):
            if process is not None and process.is_alive():
                kill_9(process)
    letters = committed_dead_letters(config, BAD_ROWS)

    assert keys_once(forecasts) == set(expected), "ticks without a forecast"
    assert_as_uninterrupted(forecasts, expected)
    assert len(origins_once(letters)) == BAD_ROWS


def signal_process(pid: int, signum: signal.Signals) -> None:
    import os

    os.kill(pid, signum)
