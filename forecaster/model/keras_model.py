"""The Keras model behind a Stepper: built from a spec, trained on sequences, exported to serve.

Imports TensorFlow (through Keras); only training and artifact loading use this module.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import LayerWeights, Stepper

HEAD_NAME = "head"


def build(spec: ModelSpec, seed: int) -> keras.Model:
    """Recurrent layers returning sequences, then a linear head: one prediction per step."""
    inputs = keras.Input(shape=(None, spec.n_features), name="features")
    x = inputs
    layer_class = keras.layers.LSTM if spec.cell == "lstm" else keras.layers.GRU
    for index in range(spec.layers):
        x = layer_class(
            spec.units,
            return_sequences=True,
            name=f"{spec.cell}_{index}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + index),
            recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 100 + index),
        )(x)
    # A zero head: the untrained model predicts "no change" (naive), and training moves it
    # away only as far as the data supports, instead of starting from random predictions.
    outputs = keras.layers.Dense(1, name=HEAD_NAME, kernel_initializer="zeros")(x)
    return keras.Model(inputs, outputs, name=f"forecaster_{spec.cell}")


def spec_of(model: keras.Model) -> ModelSpec:
    """Read the architecture back from a built or loaded model."""
    recurrent = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
    if not recurrent:
        raise ValueError("model has no recurrent layers")
    cell = "lstm" if isinstance(recurrent[0], keras.layers.LSTM) else "gru"
    return ModelSpec(
        cell=cell,
        layers=len(recurrent),
        units=int(recurrent[0].units),
        n_features=int(model.input_shape[-1]),
    )


def to_stepper(model: keras.Model, version: str) -> Stepper:
    """Export the weights into the NumPy serving step."""
    spec = spec_of(model)
    layers = []
    for index in range(spec.layers):
        kernel, recurrent_kernel, bias = model.get_layer(f"{spec.cell}_{index}").get_weights()
        layers.append(LayerWeights(_f32(kernel), _f32(recurrent_kernel), _f32(bias)))
    head_kernel, head_bias = model.get_layer(HEAD_NAME).get_weights()
    return Stepper(spec, version, layers, _f32(head_kernel), _f32(head_bias))


def _f32(array: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.ascontiguousarray(array, dtype=np.float32)
