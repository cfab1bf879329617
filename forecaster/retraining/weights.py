"""A model's serving weights as a file: a NumPy archive, written durably, read without
pickle (so serving never imports TensorFlow), and named by its content.

>>> import tempfile
>>> from pathlib import Path
>>> from forecaster.model.spec import ModelSpec
>>> spec = ModelSpec(cell="gru", layers=1, units=1, n_features=4)
>>> layer = LayerWeights(np.ones((4, 3), np.float32), np.ones((1, 3), np.float32),
...                      np.zeros((2, 3), np.float32))
>>> stepper = Stepper(spec, "draft", [layer], np.ones((1, 1), np.float32), np.zeros(1, np.float32))
>>> path = Path(tempfile.mkdtemp()) / "weights.npz"
>>> save_weights(path, stepper)
>>> load_weights(path, spec, version_name(stepper)).version == version_name(stepper)
True
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.durable import write_atomically
from forecaster.errors import ArtifactError
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import LayerWeights, Stepper


def version_name(stepper: Stepper) -> str:
    """The cell type and a short content hash of the weights: equal weights, equal name."""
    digest = hashlib.sha256()
    for array in _arrays(stepper).values():
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return f"{stepper.spec.cell}-{digest.hexdigest()[:12]}"


def weights_bytes(stepper: Stepper) -> bytes:
    """The serving weights of ``stepper`` as a NumPy archive (``load_weights`` reads it)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **_arrays(stepper))
    return buffer.getvalue()


def save_weights(path: Path, stepper: Stepper) -> None:
    """Write the serving weights of ``stepper`` to ``path`` (OSError if that fails)."""
    write_atomically(path, weights_bytes(stepper))


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
        if not all(np.isfinite(array).all() for array in _arrays(stepper).values()):
            raise ValueError("weights hold NaN or infinity")
        stepper.step(np.zeros((1, spec.n_features), np.float32), stepper.zero_state(1))
    except Exception as exc:  # a bad zip, a missing array or a wrong shape: all "cannot serve"
        raise ArtifactError(f"cannot load {path}: {exc}") from exc
    return stepper


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
