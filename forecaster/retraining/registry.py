"""The model registry on disk: one directory per version, one promoted version.

Layout::

    MODEL_DIR/versions/<version>/weights.npz      serving weights (NumPy, loaded without pickle)
    MODEL_DIR/versions/<version>/model.keras      the full Keras artifact, when Keras trained it
    MODEL_DIR/versions/<version>/metadata.json    spec, features, history window, training
                                                  figures, the gate's verdict (under
                                                  "validation"), sha256 of every file
    MODEL_DIR/promoted.json                       {"version": ..., "history": [...]}

A version name is the cell type plus a hash of the weights, so equal training gives an
equal name. Every name the registry takes in (a command line, ``promoted.json``, a
directory listing) must be a plain name (``check_version``), so none can point outside
``versions/``. Serving reads ``weights.npz`` only (``np.load(allow_pickle=False)``), so
starting a service never imports TensorFlow; every file is checked against its
recorded SHA-256 first. ``history`` lists the versions promoted before, oldest first:
a rollback promotes the last of them again.

Every file is written durably and atomically (``forecaster.durable``), and a version's
folder is published by a rename once whole: a reader, or a restart after a power cut,
sees a version whole or not at all, and ``promoted.json`` old or new. Several instances
may share one registry (a mounted volume); how they take turns to retrain is
``forecaster.retraining.sharing``.

A registry that cannot be written (read-only, full, not a directory) raises ArtifactError
naming the file and the reason, never a bare OSError: the caller (a retraining run) fails,
the service goes on.

>>> import tempfile
>>> import numpy as np
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
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.core.features import FEATURE_NAMES, FeatureParams
from forecaster.durable import sync_directory, write_atomically
from forecaster.errors import ArtifactError, ConfigError, VersionNameError
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.retraining.weights import load_weights, version_name, weights_bytes

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

FORMAT = 2
MODEL_FILE = "model.keras"
WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "metadata.json"
PROMOTED_FILE = "promoted.json"
VERSION_FILES = (WEIGHTS_FILE, MODEL_FILE)  # what a version's metadata may list
MAX_VERSION_CHARS = 100
_VERSION_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_VERSION_CHARS - 1}}}")
VERSION_RULE = (
    f"1-{MAX_VERSION_CHARS} characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a "
    "letter or digit, without '..'"
)


@dataclass(frozen=True)
class Artifact:
    """A loaded model version: the serving step and its metadata."""

    stepper: Stepper
    metadata: dict[str, Any]


def check_version(name: object) -> str:
    """``name`` if it is a plain version name (VERSION_RULE), else VersionNameError.

    The one check of every version name the registry takes in: a name becomes a
    directory under ``versions/``, so it must never be a path.

    >>> check_version("lstm-0123456789ab")
    'lstm-0123456789ab'
    >>> check_version("../../etc")
    Traceback (most recent call last):
    ...
    forecaster.errors.VersionNameError: '../../etc' is not a model version name: 1-100 ...
    """
    if isinstance(name, str) and _VERSION_PATTERN.fullmatch(name) and ".." not in name:
        return name
    raise VersionNameError(f"{shown(name)} is not a model version name: {VERSION_RULE}")


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters: hostile input stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Registry:
    """Versions of trained models under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_dir(self, version: str) -> Path:
        """The directory of ``version``; VersionNameError if it is no plain name."""
        return self.root / "versions" / check_version(version)

    def save(
        self,
        stepper: Stepper,
        features: FeatureParams,
        details: dict[str, Any],
        keras_model: keras.Model | None = None,
    ) -> str:
        """Write a new version (written aside, then renamed into place); returns its name.

        ArtifactError if the registry cannot be written (read-only, full, ...).
        """
        version = version_name(stepper)
        target = self.version_dir(version)
        try:
            if not target.exists():
                self._write_version(target, stepper, features, details, keras_model)
        except OSError as exc:
            raise ArtifactError(
                f"cannot save model version {version} in {self.root}: {os_reason(exc)}"
            ) from exc
        return version

    def _write_version(
        self,
        target: Path,
        stepper: Stepper,
        features: FeatureParams,
        details: dict[str, Any],
        keras_model: keras.Model | None,
    ) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            write_atomically(staging / WEIGHTS_FILE, weights_bytes(stepper))
            if keras_model is not None:
                keras_model.save(staging / MODEL_FILE)
                # Keras writes without fsync: rewritten durably, the file cannot be torn
                # by a power cut once the version is published.
                write_atomically(staging / MODEL_FILE, (staging / MODEL_FILE).read_bytes())
            files = sorted(p.name for p in staging.iterdir())
            metadata = {
                "format": FORMAT,
                "version": target.name,
                "created": datetime.now(UTC).isoformat(timespec="microseconds"),
                "spec": stepper.spec.to_dict(),
                "features": features.to_dict(),
                "feature_names": list(FEATURE_NAMES),
                "sha256": {name: _sha256(staging / name) for name in files},
                **details,
            }
            write_atomically(staging / METADATA_FILE, _json_bytes(metadata))
            _publish(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def versions(self) -> list[str]:
        """Every stored version, oldest first (entries that are no version name are skipped)."""
        folder = self.root / "versions"
        try:
            names = [path.name for path in folder.iterdir()] if folder.is_dir() else []
        except OSError as exc:
            raise ArtifactError(f"cannot list {folder}: {os_reason(exc)}") from exc
        created = {name: _created(folder / name) for name in names if _is_version(folder, name)}
        return sorted(created, key=lambda name: (created[name], name))

    def metadata(self, version: str) -> dict[str, Any]:
        return self._metadata(self.version_dir(version))

    def annotate(self, version: str, key: str, record: dict[str, Any]) -> None:
        """Add ``record`` under ``key`` to the metadata of ``version`` (e.g. its shadow
        verdict), written atomically; ArtifactError if it cannot be read or written."""
        folder = self.version_dir(version)
        metadata = self._metadata(folder)
        metadata[key] = record
        try:
            write_atomically(folder / METADATA_FILE, _json_bytes(metadata))
        except OSError as exc:
            raise ArtifactError(
                f"cannot record {key} of model version {version}: {os_reason(exc)}"
            ) from exc

    def promoted(self) -> str | None:
        """The promoted version (None if none is); ArtifactError if promoted.json is
        unreadable or names anything but plain version names."""
        return self._promotions()[0]

    def history(self) -> list[str]:
        """Versions promoted before the current one, oldest first."""
        return self._promotions()[1]

    def promote(self, version: str) -> None:
        """Serve ``version`` from the next start on; ArtifactError if it could not serve or
        the promotion cannot be written."""
        self.verify(version)
        current, history = self._promotions_to_replace()
        if current is not None and current != version:
            history.append(current)
        self._record_promotions(version, history)

    def rollback(self) -> str:
        """Promote the version promoted before the current one again; returns it."""
        history = [v for v in self.history() if (self.version_dir(v) / METADATA_FILE).is_file()]
        if not history:
            raise ArtifactError(f"no earlier promoted version to roll back to in {self.root}")
        target = history.pop()
        self.verify(target)
        self._record_promotions(target, history)
        return target

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond ``keep``, never the promoted one or the
        rollback target; returns the deleted versions. ArtifactError (nothing more deleted)
        if promoted.json is unreadable or a version cannot be deleted."""
        history = self.history()
        protected = {self.promoted(), history[-1] if history else None}
        versions = self.versions()
        deletable = [v for v in versions if v not in protected]
        doomed = deletable[: max(0, len(versions) - keep)]
        for version in doomed:
            try:
                shutil.rmtree(self.version_dir(version))
            except OSError as exc:
                message = f"cannot delete model version {version}: {os_reason(exc)}"
                raise ArtifactError(message) from exc
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
        try:
            spec = ModelSpec(**metadata["spec"])
        except (TypeError, ConfigError) as exc:
            raise ArtifactError(f"model {version} has no valid spec: {exc}") from exc
        stepper = load_weights(self.version_dir(version) / WEIGHTS_FILE, spec, version)
        return Artifact(stepper, metadata)

    def load_serving(self, features: FeatureParams) -> Artifact | None:
        """The promoted version, or if it cannot serve the latest earlier one that can.

        None (with a warning) when promoted.json cannot be trusted: it is not followed.
        """
        try:
            promoted, history = self._promotions()
        except ArtifactError as refused:
            log.warning("%s; not followed: no model is served from %s until a version is "
                        "promoted", refused, self.root)  # fmt: skip
            return None
        if promoted is None:
            return None
        try:
            return self.load(promoted, features)
        except ArtifactError as refused:
            for version in reversed(history):
                try:
                    artifact = self.load(version, features)
                except ArtifactError:
                    continue
                log.error("%s; serving the previously promoted %s instead", refused, version)
                return artifact
            raise

    def _promotions(self) -> tuple[str | None, list[str]]:
        """The promoted version and its history, every name checked (check_version)."""
        path = self.root / PROMOTED_FILE
        try:
            record = json.loads(path.read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None, []
        except (OSError, ValueError, RecursionError) as exc:
            raise ArtifactError(f"{path} is unreadable: {exc}") from exc
        history = record.get("history", []) if isinstance(record, dict) else None
        if not isinstance(history, list) or "version" not in record:
            raise ArtifactError(f"{path} is unreadable: not a promotion record")
        try:
            return check_version(record["version"]), [check_version(v) for v in history]
        except VersionNameError as exc:
            raise VersionNameError(f"{path} refused: {exc}") from exc

    def _promotions_to_replace(self) -> tuple[str | None, list[str]]:
        """The promotion record a new promotion extends; an untrusted one is replaced."""
        try:
            return self._promotions()
        except ArtifactError as refused:
            log.warning("%s; replacing it", refused)
            return None, []

    def _record_promotions(self, version: str, history: list[str]) -> None:
        path = self.root / PROMOTED_FILE
        try:
            write_record(path, {"version": version, "history": history})
        except OSError as exc:
            raise ArtifactError(
                f"cannot record the promotion of {version} in {path}: {os_reason(exc)}"
            ) from exc

    def _metadata(self, folder: Path) -> dict[str, Any]:
        try:
            metadata = json.loads((folder / METADATA_FILE).read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            raise ArtifactError(f"cannot read {folder / METADATA_FILE}: {exc}") from exc
        if (
            not isinstance(metadata, dict)
            or metadata.get("format") != FORMAT
            or metadata.get("feature_names") != list(FEATURE_NAMES)
        ):
            raise ArtifactError(f"{folder} is not a model of this forecaster build")
        _check_listed_files(folder, metadata.get("sha256"))
        return metadata


def _check_listed_files(folder: Path, files: object) -> None:
    """The files a version's metadata lists: the weights, at most the Keras model too, and
    nothing else (a name from disk must not lead the SHA-256 check out of ``folder``)."""
    if not isinstance(files, dict) or WEIGHTS_FILE not in files or set(files) - {*VERSION_FILES}:
        raise ArtifactError(
            f"{folder / METADATA_FILE} must list the SHA-256 of {WEIGHTS_FILE} (and at most "
            f"{MODEL_FILE}), not of {shown(files)}"
        )


def _is_version(folder: Path, name: str) -> bool:
    """Whether the entry ``name`` of ``versions/`` is a version (staging folders are not)."""
    try:
        check_version(name)
    except VersionNameError as exc:
        if not name.startswith(".staging-"):
            log.warning("%s in %s: ignored", exc, folder)
        return False
    return True


def _created(folder: Path) -> str:
    """When the version in ``folder`` was saved ('' if its metadata is unreadable)."""
    try:
        return str(json.loads((folder / METADATA_FILE).read_text()).get("created", ""))
    except (OSError, ValueError, AttributeError, RecursionError):
        return ""


def _publish(staging: Path, target: Path) -> None:
    """Rename the finished ``staging`` to ``target``, durably; another instance may have
    saved the same version (equal training, equal name) first, which is as good."""
    try:
        staging.rename(target)
    except OSError:
        if not (target / METADATA_FILE).is_file():
            raise
    sync_directory(target.parent)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc


def os_reason(exc: OSError) -> str:
    """An OSError in a few words, e.g. 'No space left on device'."""
    return exc.strerror or str(exc) or type(exc).__name__


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def write_record(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON record of the registry's (``promoted.json``, the retrain-start record)
    durably and atomically: a reader, or a restart after a power cut, sees the old record
    or the new one. OSError if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, _json_bytes(data))
