"""Exactly once: kill -9, a rebalance or a zombie never make a committed forecast or dead
letter appear twice, and never change one.

The service runs with ``processing_guarantee = "exactly_once"`` and the changelog state
store; what it delivered is read as a ``read_committed`` consumer does
(``tests.support.transactions``: Tansu 0.6.0 needs the markers applied by the reader).
Every forecast is compared with an uninterrupted engine's, as in the kill -9 test of
``test_recovery``, and every (series, ts) and every dead letter must appear exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import signal
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kafka.errors import KafkaError

from forecaster.config import Settings
from forecaster.io.base import OutRecord
from forecaster.io.kafka import KafkaTransactions
from forecaster.ops.metrics import Metrics
from tests.support.broker import committed_offsets, create_topics
from tests.support.kafka import (  # noqa: F401 (broker, settings: fixtures)
    WAIT_S,
    Key,
    broker,
    publish_input,
    settings,
)
from tests.support.recovery import (
    SEED,
    Forecast,
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
# What a resumed zombie logs once it learns it lost its partitions, or is refused.
ZOMBIE_NOTICED = re.compile(r"lost at offset|revoked at offset|transaction failed")


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


def committed_forecasts(
    config: Settings, count: int, service: Any = None, to_the_end: bool = False
) -> list[dict[str, Any]]:
    """The committed forecasts, read until there are ``count`` (and, ``to_the_end``, all
    there are) or ``service`` is gone."""

    def done(records: list[Any]) -> bool:
        return len(records) >= count or (service is not None and not service.is_alive())

    records = read_committed(config.bootstrap_servers, config.output_topic, done, WAIT_S,
                             to_the_end)  # fmt: skip
    return [json.loads(record.value) for record in records]


def committed_dead_letters(config: Settings, count: int) -> list[Any]:
    def enough(records: list[Any]) -> bool:
        return len(records) >= count

    return read_committed(config.bootstrap_servers, config.dlq_topic, enough, WAIT_S, True)


def text_of(log: Path) -> str:
    """A service's log so far ('' before the service created it)."""
    return log.read_text() if log.exists() else ""


def terminate(process: Any) -> None:
    """SIGTERM: the service finishes its batch, commits and leaves no transaction open."""
    os.kill(process.pid, signal.SIGTERM)
    process.join(WAIT_S)
    assert process.exitcode == 0


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


def reasons_of(letters: list[Any]) -> dict[str, int]:
    reasons = (dict(letter.headers)["forecaster.reason"].decode() for letter in letters)
    return dict(pd.Series(list(reasons), dtype=object).value_counts())


def assert_exactly_once(config: Settings, valid: int, expected: dict[Key, Forecast]) -> None:
    """A read_committed consumer sees each of the ``valid`` ticks' forecasts once, equal to
    the uninterrupted run's (``expected``), and each bad row's dead letter once."""
    forecasts = committed_forecasts(config, valid, to_the_end=True)
    letters = committed_dead_letters(config, BAD_ROWS)
    assert keys_once(forecasts) == set(expected), "ticks without a forecast"
    assert_as_uninterrupted(forecasts, expected)
    assert len(origins_once(letters)) == BAD_ROWS, reasons_of(letters)


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
            if i == KILLS:
                terminate(service)
        finally:
            if service.is_alive():
                kill_9(service)
        forget_killed_member(config, log)
    assert_exactly_once(config, valid, expected)
    assert "without emitting" in log.read_text(), "no restart stepped ticks again silently"


def test_taking_a_partition_fences_its_earlier_owner(
    settings: Settings,  # noqa: F811 (the fixture)
) -> None:
    """The fencing itself, on the broker: once another instance owns partition 0, what the
    earlier owner had open is aborted and what it commits later fails, offsets included."""
    make_topics(settings)
    zombie_metrics, owner_metrics = Metrics(), Metrics()
    zombie = KafkaTransactions(settings, zombie_metrics)
    owner = KafkaTransactions(settings, owner_metrics)
    record = partial(OutRecord, settings.output_topic, b"S00")
    try:
        zombie.own([0])
        zombie.send(0, record(b"zombie, open when fenced", []))
        owner.own([0])
        with contextlib.suppress(KafkaError):  # refused now or at the commit
            zombie.send(0, record(b"zombie, after being fenced", []))
        assert zombie.commit({0: 7}) == {0}
        owner.send(0, record(b"owner", []))
        assert owner.commit({0: 3}) == set()
    finally:
        zombie.close()
        owner.close()
    values = read_committed(settings.bootstrap_servers, settings.output_topic,
                            lambda records: True, WAIT_S, to_the_end=True)  # fmt: skip

    assert [record.value for record in values] == [b"owner"]
    assert committed_offsets(settings.bootstrap_servers, settings.group_id) == {0: 3}
    assert zombie_metrics.transactions_aborted._value.get() == 1
    assert owner_metrics.transactions_committed._value.get() == 1


def test_a_zombie_paused_past_its_session_commits_nothing_for_partitions_taken_over(
    settings: Settings,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """The first instance is stopped (SIGSTOP) mid-run, a second one takes every partition
    once the first's session expired, then the first is resumed (SIGCONT): nothing it
    still sends for them becomes visible, and every forecast appears exactly once."""
    config = exactly_once_settings(settings, session_timeout_ms=3000)
    make_topics(config)
    frame = ticks_with_bad_rows(tmp_path)
    expected = uninterrupted(config, tmp_path / "ticks.csv")
    half = len(frame) // 2
    publish_frame(config, frame.iloc[:half], tmp_path)
    zombie_log, survivor_log = tmp_path / "zombie.log", tmp_path / "survivor.log"
    zombie, survivor = start_service(config, zombie_log), None
    try:
        committed_forecasts(config, half // 3, zombie)
        os.kill(zombie.pid, signal.SIGSTOP)
        survivor = start_service(config, survivor_log)
        wait_for(lambda: "partitions assigned: [0, 1, 2, 3]" in text_of(survivor_log),
                 "the survivor to take every partition", WAIT_S)  # fmt: skip
        publish_frame(config, frame.iloc[half:], tmp_path)
        os.kill(zombie.pid, signal.SIGCONT)
        valid = int((frame["price"] != "-3.5").sum())
        committed_forecasts(config, valid, survivor)
        wait_for(lambda: ZOMBIE_NOTICED.search(text_of(zombie_log)) is not None,
                 "the zombie to notice it lost its partitions", WAIT_S)  # fmt: skip
        terminate(zombie)
        terminate(survivor)
    finally:
        for process in (zombie, survivor):
            if process is not None and process.is_alive():
                os.kill(process.pid, signal.SIGCONT)
                kill_9(process)
    assert_exactly_once(config, valid, expected)


def test_three_instances_one_killed_one_joining_deliver_exactly_once(
    settings: Settings,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """As ``test_scaleout``, exactly once: state moves only through the changelog, and a
    read_committed consumer sees every forecast and dead letter once."""
    config = exactly_once_settings(settings, session_timeout_ms=3000)
    create_topics(config.bootstrap_servers, {config.input_topic: 6, config.output_topic: 6,
                                             config.dlq_topic: 1})  # fmt: skip
    frame = ticks_with_bad_rows(tmp_path)
    expected = uninterrupted(config, tmp_path / "ticks.csv")
    bounds = np.linspace(0, len(frame), 4).astype(int)
    chunks = [frame.iloc[start:end] for start, end in itertools.pairwise(bounds)]
    logs = [tmp_path / f"instance-{i}.log" for i in range(4)]
    instances: list[Any] = []
    valid = 0
    try:
        instances += [start_service(config, log) for log in logs[:3]]
        for i, chunk in enumerate(chunks):
            publish_frame(config, chunk, tmp_path)
            valid += int((chunk["price"] != "-3.5").sum())
            committed_forecasts(config, valid)
            if i == 0:
                kill_9(instances[0])  # a survivor takes its partitions and their state over
            elif i == 1:
                instances.append(start_service(config, logs[3]))  # takes some over
        assert all(instance.is_alive() for instance in instances[1:]), "an instance died"
        for instance in instances[1:]:
            terminate(instance)
    finally:
        for instance in instances:
            if instance.is_alive():
                kill_9(instance)
    assert_exactly_once(config, valid, expected)
