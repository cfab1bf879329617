"""The model registry: versions, promotion history, rollback, restart, integrity, pruning,
the retrain lock.

Versions here are random NumPy steppers: serving a version reads weights.npz only, so
none of these tests imports TensorFlow.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forecaster import cli
from forecaster.config import Settings
from forecaster.errors import ArtifactError
from forecaster.features import FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.registry import PROMOTED_FILE, RETRAIN_LOCK_FILE, WEIGHTS_FILE, Registry
from forecaster.service import build_engine
from tests.support_models import random_stepper

SPEC = ModelSpec(cell="gru", layers=1, units=4)


def saved_versions(root: Path, count: int) -> tuple[Registry, list[str]]:
    registry = Registry(root)
    versions = [
        registry.save(random_stepper(SPEC, seed=seed), FeatureParams(), {"seed": seed})
        for seed in range(count)
    ]
    return registry, versions


def serving_after_restart(root: Path) -> str:
    engine, _ = build_engine(Settings(model_dir=str(root)), background_training=False)
    assert engine.model is not None
    return engine.model.version


def test_promote_rollback_and_restart_pick_the_expected_version(tmp_path: Path) -> None:
    registry, (v0, v1, v2) = saved_versions(tmp_path, 3)
    for version in (v0, v1, v2):
        registry.promote(version)
    assert registry.promoted() == v2 and registry.history() == [v0, v1]
    assert serving_after_restart(tmp_path) == v2

    assert registry.rollback() == v1
    assert serving_after_restart(tmp_path) == v1
    assert cli.main(["models", "rollback", "--model-dir", str(tmp_path)]) == 0
    assert serving_after_restart(tmp_path) == v0
    with pytest.raises(ArtifactError, match="no earlier promoted version"):
        registry.rollback()

    assert cli.main(["models", "promote", v2, "--model-dir", str(tmp_path)]) == 0
    assert serving_after_restart(tmp_path) == v2
    loaded = registry.load(v2, FeatureParams()).stepper
    x = np.ones((1, SPEC.n_features), np.float32)
    expected = random_stepper(SPEC, seed=2).step(x, loaded.zero_state(1))
    np.testing.assert_array_equal(loaded.step(x, loaded.zero_state(1))[0], expected[0])


def test_a_truncated_artifact_is_refused_and_the_previous_version_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry, (v0, v1) = saved_versions(tmp_path, 2)
    registry.promote(v0)
    registry.promote(v1)
    weights = registry.version_dir(v1) / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])

    with pytest.raises(ArtifactError, match=r"weights.npz does not match its recorded SHA-256"):
        registry.load(v1, FeatureParams())
    assert serving_after_restart(tmp_path) == v0  # promoted v1 cannot serve: v0 does

    registry.rollback()
    capsys.readouterr()
    assert cli.main(["models", "promote", v1, "--model-dir", str(tmp_path)]) == 1
    assert "SHA-256" in capsys.readouterr().err
    assert registry.promoted() == v0


def test_features_other_than_the_training_ones_are_refused(tmp_path: Path) -> None:
    registry, (v0,) = saved_versions(tmp_path, 1)
    with pytest.raises(ArtifactError, match="trained with features"):
        registry.load(v0, FeatureParams(min_history=5))


def test_prune_keeps_the_newest_the_promoted_and_the_rollback_target(tmp_path: Path) -> None:
    registry, versions = saved_versions(tmp_path, 6)
    registry.promote(versions[0])
    registry.promote(versions[1])  # rollback target: versions[0]
    deleted = registry.prune(keep=3)
    assert registry.versions() == [versions[0], versions[1], versions[5]]
    assert deleted == versions[2:5]
    assert registry.rollback() == versions[0]


def test_promotion_is_recorded_atomically_with_its_history(tmp_path: Path) -> None:
    registry, (v0, v1) = saved_versions(tmp_path, 2)
    registry.promote(v0)
    registry.promote(v1)
    record = json.loads((tmp_path / PROMOTED_FILE).read_text())
    assert record == {"version": v1, "history": [v0]}
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ArtifactError, match="cannot read"):
        registry.promote("lstm-000000000000")


def test_models_list_shows_every_version_and_the_promoted_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry, (v0, v1) = saved_versions(tmp_path, 2)
    registry.promote(v1)
    capsys.readouterr()
    assert cli.main(["models", "list", "--model-dir", str(tmp_path)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[-5] for row in rows] == [v0, v1]
    assert rows[1].startswith("*") and not rows[0].startswith("*")


def test_serving_a_saved_version_does_not_import_tensorflow(model_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from forecaster.registry import Registry; "
        "from forecaster.features import FeatureParams; r = Registry(Path(sys.argv[1])); "
        "r.load(r.promoted(), FeatureParams()); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_retrain_lock_is_free_again_once_its_holder_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from forecaster.registry import Registry; "
        "lock = Registry(Path(sys.argv[1])).retrain_lock(); print(lock is not None, flush=True); "
        "time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert Registry(tmp_path).retrain_lock() is None  # another process holds it
    finally:
        holder.kill()  # SIGKILL: no chance to release it itself
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    lock = Registry(tmp_path).retrain_lock()
    assert lock is not None
    lock.release()
    assert (tmp_path / RETRAIN_LOCK_FILE).exists()
