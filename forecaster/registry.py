"""The model registry on disk: one directory per version, one promoted version.

Layout::

    MODEL_DIR/versions/<version>/weights.npz      serving weights (NumPy, loaded without pickle)
    MODEL_DIR/versions/<version>/model.keras      the full Keras artifact, when Keras trained it
    MODEL_DIR/versions/<version>/metadata.json    spec, features, data window, training and
                                                  validation figures, sha256 of every file
    MODEL_DIR/promoted.json                       {"version": ..., "history": [...]}, atomic
    MODEL_DIR/retrain.lock                        flock-ed by the instance retraining
    MODEL_DIR/retrain-started.json                when the last retraining run started, atomic

A version name is the cell type plus a hash of the weights, so equal training gives an
equal name. Serving reads ``weights.npz`` only (``np.load(allow_pickle=False)``), so
starting a service never imports TensorFlow; every file is checked against its
recorded SHA-256 first. ``history`` lists the versions promoted before, oldest first:
a rollback promotes the last of them again.

Several instances may share one registry (a mounted volume): ``retrain_lock`` lets one
of them retrain at a time. It is an ``flock`` on ``retrain.lock``, which the kernel
frees when its holder exits, however it exits (SIGKILL too), so the volume must support
flock (a local disk, NFSv4, CephFS).

>>> import tempfile
>>> from forecaster.model.spec import ModelSpec
>>> from forecaster.model.stepper import LayerWeights, Stepper
>>> spec = ModelSpec(cell="gru", layers=1, units=1, n_features=4)
>>> layer = LayerWeights(np.ones((4, 3), np.float32), np.ones((1, 3), np.float32),
...                      np.zeros((2, 3), np.float32))
>>> stepper = Stepper(spec, "draft", [layer], np.ones((1, 1), np.float32), np.zeros(1, np.float32))
>>> registry = Registry(Path(tempfile.mkdtemp()))
>>> version = registry.save(stepper, FeatureParams(), {})
>>> registry.promote(version)
>>> registry.load(registry.promoted(), FeatureParams()).stepper.version == version
True
>>> lock = registry.retrain_lock()
>>> registry.retrain_lock() is None  # held: by this process here, by another instance live
True
>>> lock.release()
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forecaster.errors import ArtifactError
from forecaster.features import FEATURE_NAMES, FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import LayerWeights, Stepper

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

FORMAT = 2
MODEL_FILE = "model.keras"
WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "metadata.json"
PROMOTED_FILE = "promoted.json"
RETRAIN_LOCK_FILE = "retrain.lock"
RETRAIN_STARTED_FILE = "retrain-started.json"


@dataclass(frozen=True)
class Artifact:
    """A loaded model version: the serving step and its metadata."""

    stepper: Stepper
    metadata: dict[str, Any]


class RetrainLock:
    """The registry's retrain lock, held until ``release`` (or until the holder exits)."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor drops the flock
            self._descriptor = None


def version_name(stepper: Stepper) -> str:
    """The cell type and a short content hash of the weights: equal weights, equal name."""
    digest = hashlib.sha256()
    for array in _arrays(stepper).values():
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return f"{stepper.spec.cell}-{digest.hexdigest()[:12]}"


class Registry:
    """Versions of trained models under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_dir(self, version: str) -> Path:
        return self.root / "versions" / version

    def save(
        self,
        stepper: Stepper,
        features: FeatureParams,
        details: dict[str, Any],
        keras_model: keras.Model | None = None,
    ) -> str:
        """Write a new version (written aside, then renamed into place); returns its name."""
        version = version_name(stepper)
        target = self.version_dir(version)
        if target.exists():
            return version
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            save_weights(staging / WEIGHTS_FILE, stepper)
            if keras_model is not None:
                keras_model.save(staging / MODEL_FILE)
            files = sorted(p.name for p in staging.iterdir())
            metadata = {
                "format": FORMAT,
                "version": version,
                "created": datetime.now(UTC).isoformat(timespec="microseconds"),
                "spec": stepper.spec.to_dict(),
                "features": features.to_dict(),
                "feature_names": list(FEATURE_NAMES),
                "sha256": {name: _sha256(staging / name) for name in files},
                **details,
            }
            _write_json(staging / METADATA_FILE, metadata)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return version

    def versions(self) -> list[str]:
        """Every stored version, oldest first."""
        folder = self.root / "versions"
        if not folder.is_dir():
            return []
        created = {
            path.name: _created(path) for path in folder.iterdir() if not path.name.startswith(".")
        }
        return sorted(created, key=lambda name: (created[name], name))

    def metadata(self, version: str) -> dict[str, Any]:
        return self._metadata(self.version_dir(version))

    def promoted(self) -> str | None:
        record = self._promotions()
        return str(record["version"]) if record else None

    def history(self) -> list[str]:
        """Versions promoted before the current one, oldest first."""
        return [str(v) for v in self._promotions().get("history", [])]

    def promote(self, version: str) -> None:
        """Serve ``version`` from the next start on; ArtifactError if it could not serve."""
        self.verify(version)
        current, history = self.promoted(), self.history()
        if current is not None and current != version:
            history.append(current)
        _write_json(self.root / PROMOTED_FILE, {"version": version, "history": history})

    def rollback(self) -> str:
        """Promote the version promoted before the current one again; returns it."""
        history = [v for v in self.history() if (self.version_dir(v) / METADATA_FILE).is_file()]
        if not history:
            raise ArtifactError(f"no earlier promoted version to roll back to in {self.root}")
        target = history.pop()
        self.verify(target)
        _write_json(self.root / PROMOTED_FILE, {"version": target, "history": history})
        return target

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond ``keep``, never the promoted one or the
        rollback target; returns the deleted versions."""
        history = self.history()
        protected = {self.promoted(), history[-1] if history else None}
        versions = self.versions()
        deletable = [v for v in versions if v not in protected]
        doomed = deletable[: max(0, len(versions) - keep)]
        for version in doomed:
            shutil.rmtree(self.version_dir(version))
        return doomed

    def verify(self, version: str) -> dict[str, Any]:
        """The metadata of ``version`` once every file matches its recorded SHA-256."""
        folder = self.version_dir(version)
        metadata = self._metadata(folder)
        for name, expected in metadata["sha256"].items():
            if _sha256(folder / name) != expected:
                raise ArtifactError(
                    f"{folder / name} does not match its recorded SHA-256 (truncated or "
                    "corrupt): refusing to serve it"
                )
        return metadata

    def load(self, version: str, features: FeatureParams) -> Artifact:
        """Load a version for serving with ``features``; ArtifactError if it cannot serve."""
        metadata = self.verify(version)
        if metadata.get("features") != features.to_dict():
            raise ArtifactError(
                f"model {version} was trained with features {metadata.get('features')}, "
                f"the service computes {features.to_dict()}"
            )
        spec = ModelSpec(**metadata["spec"])
        stepper = load_weights(self.version_dir(version) / WEIGHTS_FILE, spec, version)
        return Artifact(stepper, metadata)

    def load_serving(self, features: FeatureParams) -> Artifact | None:
        """The promoted version, or if it cannot serve the latest earlier one that can."""
        promoted = self.promoted()
        if promoted is None:
            return None
        try:
            return self.load(promoted, features)
        except ArtifactError as refused:
            for version in reversed(self.history()):
                try:
                    artifact = self.load(version, features)
                except ArtifactError:
                    continue
                log.error("%s; serving the previously promoted %s instead", refused, version)
                return artifact
            raise

    def retrain_lock(self) -> RetrainLock | None:
        """The retrain lock, or None while another holder (another instance) has it.

        ArtifactError if the registry's file system cannot lock.
        """
        path = self.root / RETRAIN_LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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

    def record_retrain_start(self, when: float) -> None:
        """Record that a retraining run started at ``when`` (epoch seconds); hold the lock."""
        record = {"started": when, "host": os.uname().nodename}
        _write_json(self.root / RETRAIN_STARTED_FILE, record)

    def last_retrain_start(self) -> float | None:
        """When the last run of any instance started (epoch seconds), None if none did."""
        try:
            return float(json.loads((self.root / RETRAIN_STARTED_FILE).read_text())["started"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{self.root / RETRAIN_STARTED_FILE} is unreadable: {exc}") from exc

    def _promotions(self) -> dict[str, Any]:
        path = self.root / PROMOTED_FILE
        if not path.is_file():
            return {}
        try:
            record: dict[str, Any] = json.loads(path.read_text())
            str(record["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path} is unreadable: {exc}") from exc
        return record

    def _metadata(self, folder: Path) -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = json.loads((folder / METADATA_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read {folder / METADATA_FILE}: {exc}") from exc
        if metadata.get("format") != FORMAT or metadata.get("feature_names") != list(FEATURE_NAMES):
            raise ArtifactError(f"{folder} is not a model of this forecaster build")
        return metadata


def _created(folder: Path) -> str:
    """When the version in ``folder`` was saved ('' if its metadata is unreadable)."""
    try:
        return str(json.loads((folder / METADATA_FILE).read_text()).get("created", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _arrays(stepper: Stepper) -> dict[str, np.ndarray[Any, Any]]:
    """The weights in Keras' order (kernel, recurrent kernel, bias per layer, then the head)."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for index, layer in enumerate(stepper.layers):
        arrays[f"layer{index}_kernel"] = layer.kernel
        arrays[f"layer{index}_recurrent_kernel"] = layer.recurrent_kernel
        arrays[f"layer{index}_bias"] = layer.bias
    arrays["head_kernel"] = stepper.head_kernel
    arrays["head_bias"] = stepper.head_bias
    return arrays


def save_weights(path: Path, stepper: Stepper) -> None:
    """Write the serving weights of ``stepper`` as a NumPy archive (``load_weights`` reads it)."""
    np.savez(path, **_arrays(stepper))  # type: ignore[arg-type]


def load_weights(path: Path, spec: ModelSpec, version: str) -> Stepper:
    """The model ``save_weights`` wrote, loaded without pickle; ArtifactError if it cannot serve."""
    try:
        with np.load(path, allow_pickle=False) as data:
            layers = [
                LayerWeights(
                    data[f"layer{i}_kernel"],
                    data[f"layer{i}_recurrent_kernel"],
                    data[f"layer{i}_bias"],
                )
                for i in range(spec.layers)
            ]
            stepper = Stepper(spec, version, layers, data["head_kernel"], data["head_bias"])
        stepper.step(np.zeros((1, spec.n_features), np.float32), stepper.zero_state(1))
    except Exception as exc:  # a bad zip, a missing array or a wrong shape: all "cannot serve"
        raise ArtifactError(f"cannot load {path}: {exc}") from exc
    return stepper


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
