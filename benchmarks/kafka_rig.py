"""A real broker and real processes for the Kafka benchmarks (reuses tests/support/broker.py).

with broker(workdir) as tansu:
    bootstrap = tansu.bootstrap
    publish_ticks(bootstrap, "ticks", partitions=4, path=tick_file(...))
    with service(bootstrap, "ticks", "svc-1", models, workdir) as process:
        rate = consumption_rate(bootstrap, "svc-1", total)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from common import NO_DECAY, REPO, child_env, forecaster_command

from forecaster.config import Settings
from forecaster.io.produce import publish
from tests.support.broker import (
    TansuBroker,
    committed_offsets,
    create_topics,
    free_port,
    verified_tansu,
)

WATCH_EVERY_S = 0.25
STOP_TIMEOUT_S = 30.0
ASSIGNED = re.compile(r"partitions assigned: \[\d")  # a non-empty one, as the service logs it


def settings_for(bootstrap: str, **overrides: object) -> Settings:
    """The service's own client settings (tuned defaults), pointed at ``bootstrap``."""
    return replace(Settings(), bootstrap_servers=bootstrap, **overrides)  # type: ignore[arg-type]


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[TansuBroker]:
    tansu = TansuBroker(verified_tansu(), free_port(), workdir / "tansu.log")
    tansu.start()
    try:
        yield tansu
    finally:
        tansu.stop()


def publish_ticks(bootstrap: str, topic: str, partitions: int, path: Path) -> int:
    create_topics(bootstrap, {topic: partitions})
    return publish(settings_for(bootstrap), path, topic).messages


@contextlib.contextmanager
def process(
    command: list[str], log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process writing to a fresh ``log``, sent SIGTERM (then killed) when the block
    ends."""
    with log.open("wb") as out:  # an earlier run's lines must not be read as this one's
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            yield child
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def service_command(bootstrap: str, topic: str, group: str, models: Path) -> list[str]:
    return forecaster_command(
        "run", "--bootstrap-servers", bootstrap, "--input-topic", topic,
        "--output-topic", f"forecasts-{group}", "--dlq-topic", f"dlq-{group}",
        "--group-id", group, "--model-dir", str(models), "--metrics-port", "0",
    )  # fmt: skip


def service_env() -> dict[str, str]:
    return child_env(
        {"FORECASTER_RETRAIN_INTERVAL_S": "0", "FORECASTER_LOG_LEVEL": "INFO", **NO_DECAY}
    )


def consumption_rate(
    bootstrap: str, group: str, total: int, timeout: float,
    formed: Callable[[], bool] = lambda: True, *, timed: Callable[[], None] = lambda: None,
) -> float:  # fmt: skip
    """Messages per second the group committed, from its first commit once ``formed()``
    holds to its last.

    Measured from outside the process by the group's committed offsets, so the service and
    the pass-through pipe are timed alike; start-up and the group join are not counted, nor
    is anything committed before ``formed()`` (every member has its partitions); ``timed()``
    is called as the timed window opens. A run so short that its first commit covers
    everything is timed from the watch's start.
    """
    first_time = first_count = None
    watched = time.monotonic()
    deadline = watched + timeout
    while time.monotonic() < deadline:
        count = sum(committed_offsets(bootstrap, group).values())
        now = time.monotonic()
        if count and first_time is None and formed():
            first_time, first_count = now, count
            timed()
        if count >= total and first_time is not None and first_count is not None:
            if first_count >= total:
                return count / max(now - watched, 1e-9)
            return (count - first_count) / max(now - first_time, 1e-9)
        time.sleep(WATCH_EVERY_S)
    raise TimeoutError(f"group {group} did not commit {total} messages within {timeout} s")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, every thread) the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


class Scheduled(NamedTuple):
    """Seconds a process ran (``cpu_seconds``); nanoseconds its threads waited runnable for
    a CPU (Linux schedstat, whole numbers: differences stay exact), and its main thread
    alone. The difference of two ``Snapshot``s."""

    ran_s: float
    waited_ns: int
    main_waited_ns: int


class Snapshot(NamedTuple):
    """A process's CPU seconds so far and each live thread's wait so far (thread id: ns)."""

    ran_s: float
    waits_ns: dict[int, int]
    pid: int

    def __sub__(self, earlier: Snapshot) -> Scheduled:
        """What was run and waited since ``earlier``: the waits of the threads alive now (a
        thread that ended meanwhile took its wait with it, so it is left out rather than
        made to subtract from the others)."""
        waited = {tid: _waited_since(now, earlier.waits_ns.get(tid, 0))
                  for tid, now in self.waits_ns.items()}  # fmt: skip
        return Scheduled(self.ran_s - earlier.ran_s, sum(waited.values()),
                         waited.get(self.pid, 0))  # fmt: skip


def _waited_since(now: int, then: int) -> int:
    """A thread's wait since it read ``then``; less than ``then`` is a thread started
    meanwhile under a reused id, which counts from zero."""
    return now - then if now >= then else now


def scheduled(pid: int) -> Snapshot:
    """What ``pid`` has run so far, and what each of its live threads has waited."""
    waits: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            _, queued, _ = map(int, (task / "schedstat").read_text().split())
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        waits[int(task.name)] = queued
    return Snapshot(cpu_seconds([pid]), waits, pid)


def all_assigned(logs: list[Path]) -> Callable[[], bool]:
    """True once every service log shows a partition assignment (the group has formed)."""
    return lambda: all(ASSIGNED.search(log.read_text()) for log in logs)
