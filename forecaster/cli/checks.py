"""Checks before the work: each failure is one line, and comes before TensorFlow starts.

>>> host_port("[::1]:9093"), host_port("kafka")
(('::1', 9093), ('kafka', 9092))
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from forecaster.cli.flags import UsageError
from forecaster.config import Settings
from forecaster.errors import ConfigError, DeliveryError, ForecasterError

BROKER_CHECK_S = 5.0
KAFKA_PORT = 9092


def require_model_dir(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.model_dir:
        raise UsageError(f"--model-dir is required (or FORECASTER_MODEL_DIR; see {args.prog} "
                         "--help)")  # fmt: skip


def check_model_dir(settings: Settings) -> None:
    """A model directory that does not exist yet is created; a file in its place fails."""
    folder = Path(settings.model_dir)
    if settings.model_dir and folder.exists() and not folder.is_dir():
        raise ForecasterError(f"model directory {folder} is not a directory")


def existing_model_dir(settings: Settings, args: argparse.Namespace) -> Path:
    """The model directory a command works on, which must be there."""
    require_model_dir(settings, args)
    folder = Path(settings.model_dir)
    if not folder.is_dir():
        state = "is not a directory" if folder.exists() else "does not exist"
        raise ForecasterError(f"model directory {folder} {state}")
    return folder


def check_ticks(path: Path) -> None:
    from forecaster.io.files import CsvSource

    CsvSource(path, max_batch=1)  # reads the header only: SourceError if it is no tick CSV


def check_readable(path: Path, what: str) -> None:
    try:
        path.open("rb").close()
    except OSError as exc:
        raise ForecasterError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def check_output(target: str, what: str) -> None:
    """Fail before the work, not after it, when ``target`` (a path, - or stderr) cannot be
    written; its directory must exist (a typo would otherwise create a tree)."""
    if target in ("-", "stderr"):
        return
    path = Path(target)
    if path.is_dir():
        raise ForecasterError(f"{what} {path} is a directory")
    _check_folder(path.parent, f"{what} {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ForecasterError(f"{what} {path}: cannot write it")


def check_report_dir(report: Path) -> None:
    if report.exists() and not report.is_dir():
        raise ForecasterError(f"report directory {report} is not a directory")
    _check_folder(report if report.exists() else report.parent, f"report directory {report}")


def _check_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        state = "is not a directory" if folder.exists() else "does not exist"
        raise ForecasterError(f"{what}: {folder} {state}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ForecasterError(f"{what}: cannot write in {folder}")


def check_brokers(servers: str) -> None:
    """At least one bootstrap server takes a TCP connection: else fail at once, in one line,
    instead of after the Kafka client's retries and their log lines."""
    import socket

    problems = []
    for server in servers.split(","):
        try:
            socket.create_connection(host_port(server.strip()), BROKER_CHECK_S).close()
            return
        except OSError as exc:
            problems.append(f"{server.strip()}: {exc.strerror or exc}")
    raise DeliveryError(f"cannot reach Kafka at {servers}: {'; '.join(problems)}")


def host_port(server: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; Kafka's port when none is given) as a socket address."""
    host, colon, port = server.rpartition(":")
    if not colon or host.endswith(":") or "]" in port:  # no port, or an IPv6 address without
        host, port = server, str(KAFKA_PORT)
    if not port.isdigit():
        raise ConfigError(f"bootstrap server {server!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
