"""The serving path: one recurrent step for a batch of series, in NumPy and compiled loops.

A ``tf.function`` call costs ~80 µs plus ~60 µs per argument before any arithmetic,
more than a whole 2-layer step for a few series takes here, so serving steps the
exported Keras weights with NumPy. ``tests/model/test_stepper.py`` proves the step
equal to the Keras model over whole sequences.

State layout: one float32 row per series; for layer l the hidden state sits at
``[l*k*units, l*k*units + units)`` and, for an LSTM (k = 2), the cell state follows it.

>>> spec = ModelSpec(cell="gru", layers=1, units=2, n_features=1)
>>> layer = LayerWeights(np.ones((1, 6), np.float32), np.ones((2, 6), np.float32),
...                      np.zeros((2, 6), np.float32))
>>> model = Stepper(spec, "v0", [layer], np.ones((2, 1), np.float32), np.zeros(1, np.float32))
>>> y, state = model.step(np.zeros((3, 1), np.float32), model.zero_state(3))
>>> y.shape, state.shape
((3,), (3, 2))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.compiled import inlined_kernel, unchecked_kernel
from forecaster.model.spec import ModelSpec

Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
# A step of up to this many state floats (rows x state size) runs as compiled loops
# (``_lstm_rows``, ``_gru_rows``): at one row of a 2x32 LSTM 3.0 µs against 12.8 for the
# batched step, at 16 rows 1.10 µs a row against 1.25. Past that the batched step wins:
# NumPy's matrix products with each layer's activations as compiled loops over
# contiguous arrays (``_lstm_gates``, ``_gru_gates``): 0.87 µs a row at 32 rows, 0.51 at
# 1,000 (2x32 GRU: 0.46).
COMPILED_UP_TO = 2048


@dataclass(frozen=True, slots=True)
class LayerWeights:
    """Keras 3 layout: LSTM gates (i, f, c, o); GRU gates (z, r, h), reset_after biases (2, 3u)."""

    kernel: Float32Array
    recurrent_kernel: Float32Array
    bias: Float32Array


class Stepper:
    """A trained recurrent model that steps many series at once."""

    def __init__(
        self,
        spec: ModelSpec,
        version: str,
        layers: list[LayerWeights],
        head_kernel: Float32Array,
        head_bias: Float32Array,
    ) -> None:
        _check_weights(spec, layers, head_kernel, head_bias)
        self.spec = spec
        self.version = version
        self.layers = layers
        self.head_kernel = head_kernel
        self.head_bias = head_bias
        self._fused = [_fuse_lstm(w, spec.units) for w in layers] if spec.cell == "lstm" else []
        self._by_row = self._compiled_weights()

    def _compiled_weights(self) -> tuple[Any, ...]:
        """The weights as the compiled step takes them: tuples of arrays, one per layer."""
        head = (np.ascontiguousarray(self.head_kernel[:, 0]), self.head_bias[0])
        if self.spec.cell == "lstm":
            return tuple(w.kernel for w in self._fused), tuple(w.bias for w in self._fused), *head
        kernels, recurrent, biases = (
            tuple(np.ascontiguousarray(getattr(w, name)) for w in self.layers)
            for name in ("kernel", "recurrent_kernel", "bias")
        )
        return kernels, recurrent, biases, *head

    @property
    def state_size(self) -> int:
        return self.spec.state_size

    def zero_state(self, n: int) -> Float32Array:
        return np.zeros((n, self.state_size), np.float32)

    def step(self, x: Float32Array, state: Float32Array) -> tuple[Float32Array, Float32Array]:
        """Advance each row by one input; returns (predictions (n,), new states (n, S))."""
        features, size = self.spec.n_features, self.state_size
        if x.shape != (len(state), features) or state.shape[1:] != (size,):
            raise ValueError(f"a step takes inputs (n, {features}) and states (n, {size}), "
                             f"not {x.shape} and {state.shape}")  # fmt: skip
        if len(x) * self.state_size <= COMPILED_UP_TO:
            return self._step_compiled(np.ascontiguousarray(x, np.float32), state)
        units = self.spec.units
        width = self.spec.vectors_per_layer * units
        new_state = np.empty_like(state)
        inputs = x
        for index, weights in enumerate(self.layers):
            offset = index * width
            hidden = state[:, offset : offset + units]
            # Contiguous arrays of their own: the compiled loops then run vectorised (10x
            # faster than on strided slices of the state rows, which may alias).
            out = np.empty((len(x), units), np.float32)
            if self.spec.cell == "lstm":
                fused, cells = self._fused[index], slice(offset + units, offset + width)
                gates = np.concatenate([inputs, hidden], axis=1) @ fused.kernel
                cell = np.empty_like(out)
                _lstm_gates(gates, fused.bias, np.ascontiguousarray(state[:, cells]), out, cell)
                new_state[:, cells] = cell
            else:
                from_input = inputs @ weights.kernel + weights.bias[0]
                from_state = hidden @ weights.recurrent_kernel + weights.bias[1]
                _gru_gates(from_input, from_state, np.ascontiguousarray(hidden), out)
            new_state[:, offset : offset + units] = out
            inputs = out
        prediction = inputs @ self.head_kernel + self.head_bias
        return prediction[:, 0], new_state

    def load_kernels(self) -> None:
        """Step zeros through both ways ``step`` takes (a few rows, many), so that the
        compiled loops of each are loaded now rather than inside a batch served."""
        for rows in (1, COMPILED_UP_TO // self.state_size + 1):
            self.step(np.zeros((rows, self.spec.n_features), np.float32), self.zero_state(rows))

    def _step_compiled(
        self, x: Float32Array, state: Float32Array
    ) -> tuple[Float32Array, Float32Array]:
        if self.spec.cell == "lstm":
            return _lstm_rows(x, state, *self._by_row)
        return _gru_rows(x, state, *self._by_row)

    def run(self, x: Float32Array, length: IntArray) -> tuple[Float32Array, Float32Array]:
        """Step left-aligned sequences ``x`` (n, T, F) of ``length`` steps from zero state.

        Returns the predictions (n, T), zero past each length, and the final states.
        """
        n, steps, _ = x.shape
        state = self.zero_state(n)
        predictions = np.zeros((n, steps), np.float32)
        for t in range(int(length.max(initial=0))):
            rows = np.flatnonzero(length > t)
            predictions[rows, t], state[rows] = self.step(x[rows, t], state[rows])
        return predictions, state


def _check_weights(
    spec: ModelSpec, layers: list[LayerWeights], head_kernel: Float32Array, head_bias: Float32Array
) -> None:
    """ValueError unless the weights are float32 arrays of Keras' shapes for ``spec`` (the
    compiled step reads them unchecked)."""
    if len(layers) != spec.layers:
        raise ValueError(f"spec has {spec.layers} layers, weights have {len(layers)}")
    units, gates = spec.units, (4 if spec.cell == "lstm" else 3) * spec.units
    bias = (gates,) if spec.cell == "lstm" else (2, gates)
    expected = [
        (f"layer{index}_{name}", array, shape)
        for index, layer in enumerate(layers)
        for name, array, shape in (
            ("kernel", layer.kernel, (spec.n_features if index == 0 else units, gates)),
            ("recurrent_kernel", layer.recurrent_kernel, (units, gates)),
            ("bias", layer.bias, bias),
        )
    ] + [("head_kernel", head_kernel, (units, 1)), ("head_bias", head_bias, (1,))]
    for name, array, shape in expected:
        if not (isinstance(array, np.ndarray) and array.dtype == np.float32):
            raise ValueError(f"{name} is not a float32 array")
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}, the spec needs {shape}")


@dataclass(frozen=True, slots=True)
class _FusedLstm:
    """One LSTM layer as a single matmul: [x, h] @ kernel + bias, gates ordered (i, f, o, c)
    so that one sigmoid covers the first three; ~40% fewer NumPy calls than Keras' layout."""

    kernel: Float32Array  # (inputs + units, 4 * units)
    bias: Float32Array


def _fuse_lstm(w: LayerWeights, units: int) -> _FusedLstm:
    i, f, c, o = (slice(k * units, (k + 1) * units) for k in range(4))
    order = np.r_[i, f, o, c]
    kernel = np.concatenate([w.kernel, w.recurrent_kernel])[:, order]
    return _FusedLstm(np.ascontiguousarray(kernel), np.ascontiguousarray(w.bias[order]))


@unchecked_kernel
def _lstm_gates(
    gates: Float32Array, bias: Float32Array, cell: Float32Array, hidden_out: Float32Array,
    cell_out: Float32Array,
) -> None:  # fmt: skip
    """A layer's new hidden and cell states from its gates ((i, f, o, c), without their
    bias) and cell states (``_lstm_unit`` on each unit of each row)."""
    units = cell.shape[1]
    for row in range(len(gates)):
        for k in range(units):
            cell_out[row, k], hidden_out[row, k] = _lstm_unit(
                gates[row, k] + bias[k], gates[row, units + k] + bias[units + k],
                gates[row, 2 * units + k] + bias[2 * units + k],
                gates[row, 3 * units + k] + bias[3 * units + k], cell[row, k],
            )  # fmt: skip


@inlined_kernel
def _lstm_unit(
    given: np.float32, forget: np.float32, output: np.float32, candidate: np.float32,
    cell: np.float32,
) -> tuple[np.float32, np.float32]:  # fmt: skip
    """One LSTM unit: its new cell and hidden state from its gates' pre-activations (bias
    added) and its cell state."""
    new_cell = _sigmoid_one(forget) * cell
    new_cell += _sigmoid_one(given) * _tanh_one(candidate)
    return new_cell, _sigmoid_one(output) * _tanh_one(new_cell)


@unchecked_kernel
def _lstm_rows(
    x: Float32Array, state: Float32Array, kernels: tuple[Float32Array, ...],
    biases: tuple[Float32Array, ...], head: Float32Array, head_bias: np.float32,
) -> tuple[Float32Array, Float32Array]:  # fmt: skip
    """``Stepper.step`` of an LSTM, row by row: the fused kernels and biases of each
    layer."""
    units = len(head)
    new_state, prediction = np.empty_like(state), np.empty(len(x), np.float32)
    gates = np.empty(4 * units, np.float32)
    for row in range(len(x)):
        inputs = x[row]
        for layer in range(len(kernels)):
            offset = 2 * units * layer
            _affine(inputs, state[row, offset : offset + units], kernels[layer], gates)
            for k in range(4 * units):
                gates[k] += biases[layer][k]
            for k in range(units):
                new_state[row, offset + units + k], new_state[row, offset + k] = _lstm_unit(
                    gates[k], gates[units + k], gates[2 * units + k], gates[3 * units + k],
                    state[row, offset + units + k],
                )  # fmt: skip
            inputs = new_state[row, offset : offset + units]
        prediction[row] = np.dot(inputs, head) + head_bias
    return prediction, new_state


@unchecked_kernel
def _gru_rows(
    x: Float32Array, state: Float32Array, kernels: tuple[Float32Array, ...],
    recurrent: tuple[Float32Array, ...], biases: tuple[Float32Array, ...],
    head: Float32Array, head_bias: np.float32,
) -> tuple[Float32Array, Float32Array]:  # fmt: skip
    """``Stepper.step`` of a GRU, row by row."""
    units = len(head)
    new_state, prediction = np.empty_like(state), np.empty(len(x), np.float32)
    from_input, from_state = np.empty(3 * units, np.float32), np.empty(3 * units, np.float32)
    no_input = np.empty(0, np.float32)
    for row in range(len(x)):
        inputs = x[row]
        for layer in range(len(kernels)):
            hidden = state[row, layer * units : (layer + 1) * units]
            _affine(inputs, no_input, kernels[layer], from_input)
            _affine(hidden, no_input, recurrent[layer], from_state)
            for k in range(3 * units):
                from_input[k] += biases[layer][0, k]
                from_state[k] += biases[layer][1, k]
            for k in range(units):
                new_state[row, layer * units + k] = _gru_unit(
                    from_input[k] + from_state[k], from_input[units + k] + from_state[units + k],
                    from_input[2 * units + k], from_state[2 * units + k], hidden[k],
                )  # fmt: skip
            inputs = new_state[row, layer * units : (layer + 1) * units]
        prediction[row] = np.dot(inputs, head) + head_bias
    return prediction, new_state


@unchecked_kernel
def _affine(
    inputs: Float32Array, hidden: Float32Array, kernel: Float32Array, out: Float32Array
) -> None:
    """``out = [inputs, hidden] @ kernel``, a row at a time of ``kernel``."""
    out[:] = 0.0
    for j in range(len(inputs) + len(hidden)):
        value = inputs[j] if j < len(inputs) else hidden[j - len(inputs)]
        for k in range(len(out)):
            out[k] += value * kernel[j, k]


@unchecked_kernel
def _sigmoid_one(x: np.float32) -> np.float32:
    return np.float32(0.5) * (_tanh_one(np.float32(0.5) * x) + np.float32(1.0))


# tanh as a rational function of x (odd degree 13 over even degree 6) on [-7.9, 7.9],
# Eigen's ``ptanh_float``: within 6 float32 ulps of tanh, and plain arithmetic, so that a
# loop of them runs vectorised (0.34 ns a value against 15 for the C library's tanhf).
_TANH_CLAMP = np.float32(7.90531110763549805)
_TANH_P = tuple(np.float32(a) for a in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
))  # fmt: skip
_TANH_Q = tuple(np.float32(b) for b in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03,
))  # fmt: skip


@unchecked_kernel
def _tanh_one(x: np.float32) -> np.float32:
    """tanh of a float32 (NaN stays NaN)."""
    x = _TANH_CLAMP if x > _TANH_CLAMP else (-_TANH_CLAMP if x < -_TANH_CLAMP else x)
    square = x * x
    p = _TANH_P[0]
    for a in _TANH_P[1:]:
        p = p * square + a
    q = _TANH_Q[0]
    for b in _TANH_Q[1:]:
        q = q * square + b
    result: np.float32 = x * p / q
    return result


@unchecked_kernel
def _gru_gates(
    from_input: Float32Array, from_state: Float32Array, hidden: Float32Array,
    hidden_out: Float32Array,
) -> None:  # fmt: skip
    """A layer's new hidden states from its gates (z, r, h; biases added) and hidden
    states (``_gru_unit`` on each unit of each row)."""
    units = hidden.shape[1]
    for row in range(len(hidden)):
        for k in range(units):
            hidden_out[row, k] = _gru_unit(
                from_input[row, k] + from_state[row, k],
                from_input[row, units + k] + from_state[row, units + k],
                from_input[row, 2 * units + k], from_state[row, 2 * units + k], hidden[row, k],
            )  # fmt: skip


@inlined_kernel
def _gru_unit(
    update: np.float32, reset: np.float32, candidate_input: np.float32,
    candidate_state: np.float32, hidden: np.float32,
) -> np.float32:  # fmt: skip
    """One GRU unit: its new hidden state from its gates' pre-activations (biases added;
    the candidate's in its input and state parts, the reset gate scaling the latter) and
    its hidden state."""
    update, reset = _sigmoid_one(update), _sigmoid_one(reset)
    candidate = _tanh_one(candidate_input + reset * candidate_state)
    return update * hidden + (np.float32(1.0) - update) * candidate
