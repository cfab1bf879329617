"""The model registry: versions, promotion history, rollback, restart, integrity, pruning,
version names that are no plain names, a registry that cannot be written (its records of
the instances sharing it too).

Versions here are random NumPy steppers: serving a version reads weights.npz only, so
none of these tests imports TensorFlow.
"""

import errno
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forecaster import cli
from forecaster.config import Settings
from forecaster.core.features import FeatureParams
from forecaster.errors import ArtifactError, VersionNameError
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.retraining import registry as registry_module
from forecaster.retraining.registry import (
    METADATA_FILE,
    PROMOTED_FILE,
    WEIGHTS_FILE,
    Registry,
    check_version,
)
from forecaster.retraining.sharing import (
    RETRAIN_STARTED_FILE,
    last_retrain_start,
    record_retrain_start,
    retrain_lock,
)
from forecaster.service import build_engine
from tests.support.models import random_stepper

SPEC = ModelSpec(cell="gru", layers=1, units=4)


def saved_versions(root: Path, count: int) -> tuple[Registry, list[str]]:
    registry = Registry(root)
    versions = [
        registry.save(random_stepper(SPEC, seed=seed), FeatureParams(), {"seed": seed})
        for seed in range(count)
    ]
    return registry, versions


def serving_after_restart(root: Path) -> str:
    engine, _ = build_engine(Settings(model_dir=str(root)), Metrics(), background_training=False)
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
    assert [row.split()[-9] for row in rows] == [v0, v1]
    assert rows[1].startswith("*") and not rows[0].startswith("*")


def test_serving_a_saved_version_does_not_import_tensorflow(model_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from forecaster.retraining.registry import Registry; "
        "from forecaster.core.features import FeatureParams; r = Registry(Path(sys.argv[1])); "
        "r.load(r.promoted(), FeatureParams()); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# --- version names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["lstm-0123456789ab", "gru-abc", "v1.2_3", "A" * 100, "naive", "0"]
)
def test_a_plain_version_name_passes(name: str) -> None:
    assert check_version(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../../etc", "a/b", "/etc", "a\\b", "a..b", "a\x00b", "A" * 101, "-rf",
     ".staging-x", "name\n", "ü-1", "a b", 7, None, ["lstm-1"]],
)  # fmt: skip
def test_anything_else_is_a_version_name_error(name: object) -> None:
    with pytest.raises(VersionNameError, match="is not a model version name: 1-100 characters"):
        check_version(name)


def decoy_outside(registry: Registry, version: str, folder: Path) -> str:
    """A copy of ``version`` at ``folder`` outside the registry: a valid version in every
    respect but its place. Returns the relative name that would reach it from versions/."""
    shutil.copytree(registry.version_dir(version), folder)
    return "../../" + folder.name


def test_every_entry_point_refuses_a_version_that_is_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry, (v0,) = saved_versions(tmp_path / "models", 1)
    registry.promote(v0)
    sneaky = decoy_outside(registry, v0, tmp_path / "outside")
    for entry in (registry.promote, registry.verify, registry.metadata, registry.version_dir):
        with pytest.raises(VersionNameError, match=r"'\.\./\.\./outside' is not a model version"):
            entry(sneaky)
    with pytest.raises(VersionNameError):
        registry.load(sneaky, FeatureParams())

    capsys.readouterr()
    assert cli.main(["models", "promote", sneaky, "--model-dir", str(tmp_path / "models")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("forecaster: error: '../../outside' is not a model version name")
    assert registry.promoted() == v0


def test_a_tampered_promoted_json_is_refused_with_a_warning_and_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "models"
    registry, (v0, v1) = saved_versions(root, 2)
    registry.promote(v0)
    sneaky = decoy_outside(registry, v1, tmp_path / "evil")
    (root / PROMOTED_FILE).write_text(json.dumps({"version": sneaky, "history": [v0]}))

    with pytest.raises(VersionNameError, match=r"promoted.json refused: '\.\./\.\./evil'"):
        registry.promoted()
    with caplog.at_level(logging.WARNING, "forecaster.retraining.registry"):
        engine, _ = build_engine(
            Settings(model_dir=str(root)), Metrics(), background_training=False
        )
    assert engine.model is None  # naive: neither the decoy nor a guess from the record
    assert "promoted.json refused" in caplog.text and "not followed" in caplog.text
    with pytest.raises(ArtifactError):
        registry.prune(keep=0)  # what is protected is unknown: nothing is deleted
    assert registry.versions() == [v0, v1] and (tmp_path / "evil" / WEIGHTS_FILE).exists()

    # A tampered history is refused alike; an operator's promotion replaces the record.
    (root / PROMOTED_FILE).write_text(json.dumps({"version": v0, "history": ["../x"]}))
    with pytest.raises(VersionNameError):
        registry.history()
    assert cli.main(["models", "promote", v1, "--model-dir", str(root)]) == 0
    assert registry.promoted() == v1 and registry.history() == []


@pytest.mark.parametrize(
    "listed", [{"../../../etc/hostname": "0" * 64}, {}, {"weights.npz": "x", "extra.bin": "y"}]
)
def test_metadata_must_list_the_weights_and_nothing_outside_its_version(
    tmp_path: Path, listed: dict[str, str]
) -> None:
    registry, (v0,) = saved_versions(tmp_path, 1)
    path = registry.version_dir(v0) / METADATA_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | {"sha256": listed}))
    with pytest.raises(ArtifactError, match=r"must list the SHA-256 of weights\.npz"):
        registry.verify(v0)


def test_a_folder_that_is_no_version_name_is_not_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry, (v0,) = saved_versions(tmp_path, 1)
    (tmp_path / "versions" / "odd name").mkdir()
    (tmp_path / "versions" / ".staging-abc").mkdir()  # a save under way: not a version yet
    assert registry.versions() == [v0]
    assert caplog.text.count("is not a model version name") == 1


def test_weights_that_are_not_finite_cannot_serve(tmp_path: Path) -> None:
    stepper = random_stepper(SPEC, seed=1)
    stepper.head_bias[0] = np.nan
    registry = Registry(tmp_path)
    version = registry.save(stepper, FeatureParams(), {})
    with pytest.raises(ArtifactError, match="NaN or infinity"):
        registry.load(version, FeatureParams())


# --- a registry that cannot be written ------------------------------------------------------


def beneath_a_file(tmp_path: Path) -> Path:
    """A registry directory that cannot exist, for root too: its parent is a regular file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    return blocker / "models"


def test_a_registry_beneath_a_file_raises_artifact_errors_with_the_reason(
    tmp_path: Path,
) -> None:
    registry = Registry(beneath_a_file(tmp_path))
    with pytest.raises(ArtifactError, match=r"cannot save model version gru-\w+ in .*: Not a dir"):
        registry.save(random_stepper(SPEC), FeatureParams(), {})
    with pytest.raises(ArtifactError, match=r"cannot open the retrain lock .*: Not a directory"):
        retrain_lock(registry.root)
    with pytest.raises(ArtifactError, match=r"retrain-started\.json: Not a directory"):
        record_retrain_start(registry.root, 1.0)
    # Reading finds nothing, as in an empty registry.
    assert registry.promoted() is None and registry.versions() == []
    assert last_retrain_start(registry.root) is None


def no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_fails_each_write_and_leaves_the_registry_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, (v0, v1) = saved_versions(tmp_path, 2)
    registry.promote(v0)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setattr(registry_module, "write_atomically", no_space)
    with pytest.raises(ArtifactError, match=f"cannot record the promotion of {v1} in .*: No space"):
        registry.promote(v1)
    with pytest.raises(ArtifactError, match=r"cannot save model version .*: No space left"):
        registry.save(random_stepper(SPEC, seed=9), FeatureParams(), {})
    with pytest.raises(ArtifactError, match=f"{RETRAIN_STARTED_FILE}: No space left"):
        record_retrain_start(registry.root, 1.0)
    assert registry.promoted() == v0
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no debris


def test_a_version_that_cannot_be_deleted_fails_the_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, (v0, _, v2) = saved_versions(tmp_path, 3)
    registry.promote(v2)

    def read_only(path: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(shutil, "rmtree", read_only)
    with pytest.raises(ArtifactError, match=f"cannot delete model version {v0}: Read-only"):
        registry.prune(keep=2)
