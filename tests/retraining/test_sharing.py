"""Instances sharing one registry: the retrain lock, the start record, turns (one run at a
time, scheduled runs spread out), and following the promoted version.

How instances behave around them, end to end, is in test_coordinator.py.
"""

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forecaster.core.features import FeatureParams
from forecaster.errors import ArtifactError
from forecaster.model.spec import ModelSpec
from forecaster.retraining.registry import Registry
from forecaster.retraining.sharing import (
    RETRAIN_LOCK_FILE,
    RETRAIN_STARTED_FILE,
    RegistryFollower,
    Turns,
    last_retrain_start,
    retrain_lock,
)
from tests.support.models import random_stepper

SPEC = ModelSpec(cell="gru", layers=1, units=4)


def test_the_retrain_lock_is_free_again_once_its_holder_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; "
        "from forecaster.retraining.sharing import retrain_lock; "
        "lock = retrain_lock(Path(sys.argv[1])); print(lock is not None, flush=True); "
        "time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert retrain_lock(tmp_path) is None  # another process holds it
    finally:
        holder.kill()  # SIGKILL: no chance to release it itself
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    lock = retrain_lock(tmp_path)
    assert lock is not None
    lock.release()
    assert (tmp_path / RETRAIN_LOCK_FILE).exists()


def test_a_garbled_retrain_start_record_is_an_artifact_error(tmp_path: Path) -> None:
    for garbage in ("{", '{"started": "soon"}', '{"started": Infinity}', "[]"):
        (tmp_path / RETRAIN_STARTED_FILE).write_text(garbage)
        with pytest.raises(ArtifactError, match="is unreadable"):
            last_retrain_start(tmp_path)


def test_a_turn_is_one_instance_at_a_time_and_a_scheduled_one_waits_for_the_period(
    tmp_path: Path,
) -> None:
    first, second = Turns(tmp_path, period_s=3600), Turns(tmp_path, period_s=3600)
    assert first.take(scheduled=True) is None  # taken: the lock held, the start recorded
    assert abs(last_retrain_start(tmp_path) - time.time()) < 60  # type: ignore[operator]
    assert second.take(scheduled=False) == "another instance holds the retrain lock"
    first.release()
    skipped = second.take(scheduled=True)
    assert skipped is not None and skipped.startswith("a retraining run started")
    assert second.take(scheduled=False) is None  # a request does not wait for the period
    second.release()
    lock = retrain_lock(tmp_path)
    assert lock is not None  # every turn released
    lock.release()


def test_the_follower_takes_up_a_promotion_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="forecaster.retraining.sharing")
    registry = Registry(tmp_path)
    v0, v1 = (
        registry.save(random_stepper(SPEC, seed=seed), FeatureParams(), {}) for seed in (0, 1)
    )
    follower = RegistryFollower(registry, FeatureParams(), poll_s=0.001)
    assert follower.poll(serving=None) is None  # nothing promoted
    registry.promote(v1)
    time.sleep(0.002)
    taken = follower.poll(serving=v0)
    assert taken is not None and taken.version == v1
    time.sleep(0.002)
    assert follower.poll(serving=v1) is None  # serving what is promoted
    assert f"taking up model {v1}" in caplog.text
    assert RegistryFollower(registry, FeatureParams(), poll_s=0).poll(serving=v0) is None  # off
