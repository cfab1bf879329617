"""Instances sharing one registry (live): one retraining run at a time, scheduled runs
spread out, and every instance serving what any of them promotes.

- *Turns* (``Turns``): a run holds the registry's retrain lock from its fit to its
  promotion; while another instance holds it, a run is skipped. The lock is an
  ``flock`` on ``MODEL_DIR/retrain.lock``, which the kernel frees when its holder exits,
  however it exits (SIGKILL too), so the volume must support flock (a local disk,
  NFSv4, CephFS). A run of the interval/cron trigger is skipped too when any instance
  started one less than ``RECENT_SHARE`` of the trigger's period ago (the start record,
  ``MODEL_DIR/retrain-started.json``), so N instances retrain once per period, not N times.
- *Following* (``RegistryFollower``): every ``registry_poll_s`` an instance compares the
  promoted version with the one it serves and, if they differ (another instance
  promoted, or a ``forecaster models`` promote or rollback), loads it.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> lock = retrain_lock(root)
>>> retrain_lock(root) is None  # held: by this process here, by another instance live
True
>>> lock.release()
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import time
from pathlib import Path

from forecaster.core.features import FeatureParams
from forecaster.errors import ArtifactError
from forecaster.model.stepper import Stepper
from forecaster.retraining.registry import Registry, os_reason, write_record

log = logging.getLogger(__name__)

RETRAIN_LOCK_FILE = "retrain.lock"
RETRAIN_STARTED_FILE = "retrain-started.json"
RECENT_SHARE = 0.9  # a scheduled run this close (in periods) after any instance's run is skipped


class RetrainLock:
    """The registry's retrain lock, held until ``release`` (or until the holder exits)."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor drops the flock
            self._descriptor = None


def retrain_lock(root: Path) -> RetrainLock | None:
    """The retrain lock of the registry at ``root``, or None while another holder (another
    instance) has it. ArtifactError if the lock file cannot be opened or its file system
    cannot lock."""
    path = root / RETRAIN_LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ArtifactError(f"cannot open the retrain lock {path}: {os_reason(exc)}") from exc
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    except OSError as exc:
        os.close(descriptor)
        message = f"cannot lock {path} (the volume must support flock): {exc}"
        raise ArtifactError(message) from exc
    return RetrainLock(descriptor)


def record_retrain_start(root: Path, when: float) -> None:
    """Record that a retraining run started at ``when`` (epoch seconds); hold the lock."""
    path = root / RETRAIN_STARTED_FILE
    try:
        write_record(path, {"started": when, "host": os.uname().nodename})
    except OSError as exc:
        raise ArtifactError(f"cannot write {path}: {os_reason(exc)}") from exc


def last_retrain_start(root: Path) -> float | None:
    """When the last run of any instance started (epoch seconds), None if none did;
    ArtifactError if the record is unreadable."""
    path = root / RETRAIN_STARTED_FILE
    try:
        started = float(json.loads(path.read_bytes())["started"])
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ArtifactError(f"{path} is unreadable: {exc}") from exc
    if not math.isfinite(started):
        raise ArtifactError(f"{path} is unreadable: started at {started}")
    return started


class Turns:
    """This instance's turns to retrain on the registry at ``root``; ``period_s`` is the
    schedule's (0: none)."""

    def __init__(self, root: Path, period_s: float) -> None:
        self.root = root
        self.period_s = period_s
        self._lock: RetrainLock | None = None

    def take(self, scheduled: bool) -> str | None:
        """Take the turn: the retrain lock, held until ``release``, with the run's start
        recorded (None). Or why the run is skipped: another instance holds the lock or, for
        a ``scheduled`` run, any instance started one less than RECENT_SHARE x
        ``period_s`` ago. ArtifactError (nothing held) if the lock or the record fails."""
        lock = retrain_lock(self.root)
        if lock is None:
            return "another instance holds the retrain lock"
        try:
            last = _last_start(self.root) if scheduled else None
            ago = time.time() - last if last is not None else float("inf")
            # abs: a start a little ahead is another instance's clock; far ahead, a bad record
            if abs(ago) < RECENT_SHARE * self.period_s:
                lock.release()
                return f"a retraining run started {ago:.0f} s ago"
            record_retrain_start(self.root, time.time())
        except ArtifactError:
            lock.release()
            raise
        self._lock = lock
        return None

    def release(self) -> None:
        """End the turn (the run's outcome is in), if one is held."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _last_start(root: Path) -> float | None:
    """When any instance last started a run; None, with a warning, if the record is
    unreadable (this run then writes a good one)."""
    try:
        return last_retrain_start(root)
    except ArtifactError as exc:
        log.warning("%s; taken as no recent run", exc)
        return None


class RegistryFollower:
    """Takes up the registry's promoted version when it is not the one serving, checking
    every ``poll_s`` (0: never). A version that cannot serve here is refused, logged once,
    and not tried again until the registry promotes another."""

    def __init__(self, registry: Registry, features: FeatureParams, poll_s: float) -> None:
        self.registry = registry
        self.features = features
        self.poll_s = poll_s
        self._next_poll = 0.0
        self._refused: str | None = None  # a promoted version that could not serve here
        self._refusal = ""  # the last reason the promoted version was not taken up

    def poll(self, serving: str | None) -> Stepper | None:
        """The promoted model to swap in, if it is due for a check and not ``serving``."""
        now = time.monotonic()
        if not self.poll_s or now < self._next_poll:
            return None
        self._next_poll = now + self.poll_s
        try:
            promoted = self.registry.promoted()
            if promoted is None or promoted in (serving, self._refused):
                return None
            self._refused = promoted  # until it loaded: its load is not tried again
            model = self.registry.load(promoted, self.features).stepper
        except ArtifactError as exc:
            if str(exc) != self._refusal:  # logged once, not at every poll
                log.error("cannot take up the promoted model (%s); serving %s still", exc, serving)
            self._refusal = str(exc)
            return None
        self._refused, self._refusal = None, ""
        log.info("taking up model %s, promoted in %s", promoted, self.registry.root)
        return model
