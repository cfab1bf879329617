"""The model registry on disk: one directory per version, one promoted version.

Layout::

    MODEL_DIR/versions/<version>/model.keras      Keras native format (weights + config)
    MODEL_DIR/versions/<version>/metadata.json    spec, feature params, training figures, sha256
    MODEL_DIR/promoted.json                       {"version": ...}, replaced atomically

A version name is the cell type plus a hash of the weights, so equal training gives an
equal name. Loading checks the artifact's SHA-256 before Keras reads it and loads with
``safe_mode=True``: nothing from disk is ever unpickled or deserialised unsafely.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.errors import ArtifactError
from forecaster.features import FEATURE_NAMES, FeatureParams
from forecaster.model.spec import ModelSpec

if TYPE_CHECKING:
    import keras

    from forecaster.model.stepper import Stepper

FORMAT = 1
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
PROMOTED_FILE = "promoted.json"


@dataclass(frozen=True)
class Artifact:
    """A loaded model version: the serving step and its metadata."""

    stepper: Stepper
    metadata: dict[str, Any]


class Registry:
    """Versions of trained models under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_dir(self, version: str) -> Path:
        return self.root / "versions" / version

    def save(
        self,
        model: keras.Model,
        features: FeatureParams,
        details: dict[str, Any],
    ) -> str:
        """Write a new version (directory written aside, then renamed into place)."""
        from forecaster.model import keras_model

        spec = keras_model.spec_of(model)
        version = f"{spec.cell}-{keras_model.weights_digest(model)}"
        target = self.version_dir(version)
        if target.exists():
            return version
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            model.save(staging / MODEL_FILE)
            metadata = {
                "format": FORMAT,
                "version": version,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "spec": spec.to_dict(),
                "features": features.to_dict(),
                "feature_names": list(FEATURE_NAMES),
                "sha256": {MODEL_FILE: _sha256(staging / MODEL_FILE)},
                **details,
            }
            _write_json(staging / METADATA_FILE, metadata)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return version

    def versions(self) -> list[str]:
        folder = self.root / "versions"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / METADATA_FILE).is_file())

    def promoted(self) -> str | None:
        path = self.root / PROMOTED_FILE
        if not path.is_file():
            return None
        try:
            return str(json.loads(path.read_text())["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path} is unreadable: {exc}") from exc

    def promote(self, version: str) -> None:
        if not (self.version_dir(version) / METADATA_FILE).is_file():
            raise ArtifactError(f"no model version {version!r} in {self.root}")
        _write_json(self.root / PROMOTED_FILE, {"version": version})

    def load(self, version: str, features: FeatureParams) -> Artifact:
        """Load a version for serving with ``features``; ArtifactError if it cannot serve."""
        folder = self.version_dir(version)
        metadata = self._metadata(folder)
        if metadata.get("features") != features.to_dict():
            raise ArtifactError(
                f"model {version} was trained with features {metadata.get('features')}, "
                f"the service computes {features.to_dict()}"
            )
        model_path = folder / MODEL_FILE
        if _sha256(model_path) != metadata["sha256"][MODEL_FILE]:
            raise ArtifactError(f"{model_path} does not match its recorded SHA-256 (truncated?)")
        from forecaster.model import keras_model

        return Artifact(keras_model.to_stepper(_load_keras(model_path), version), metadata)

    def _metadata(self, folder: Path) -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = json.loads((folder / METADATA_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read {folder / METADATA_FILE}: {exc}") from exc
        if metadata.get("format") != FORMAT or metadata.get("feature_names") != list(FEATURE_NAMES):
            raise ArtifactError(f"{folder} is not a model of this forecaster build")
        ModelSpec(**metadata["spec"])
        return metadata


def _load_keras(path: Path) -> keras.Model:
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        raise ArtifactError(f"cannot load {path}: {exc}") from exc


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
