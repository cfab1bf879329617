"""The serving step equals the Keras model: a contract every cell type must pass."""

from dataclasses import replace

import numpy as np
import pytest

from forecaster.model import keras_model, stepper
from forecaster.model.spec import ModelSpec
from tests.support.models import random_stepper

SPECS = [
    ModelSpec(cell="lstm", layers=2, units=16),
    ModelSpec(cell="gru", layers=2, units=16),
    ModelSpec(cell="lstm", layers=3, units=8),
    ModelSpec(cell="gru", layers=3, units=8),
]


def trained_looking_model(spec: ModelSpec, seed: int):  # type: ignore[no-untyped-def]
    """A Keras model with non-trivial weights (biases too), as training would leave it."""
    model = keras_model.build(spec, seed=seed)
    rng = np.random.default_rng(seed)
    model.set_weights(
        [w + rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()]
    )
    return model


@pytest.mark.parametrize("rows", [1, 400], ids=["compiled", "numpy"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.cell}-{s.layers}x{s.units}")
def test_step_by_step_equals_keras_full_sequence(spec: ModelSpec, rows: int) -> None:
    """One row steps in compiled loops, 400 in NumPy (``stepper.COMPILED_UP_TO``)."""
    assert (rows * spec.state_size <= stepper.COMPILED_UP_TO) == (rows == 1)
    model = trained_looking_model(spec, seed=spec.layers)
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1.5, (rows, 200, spec.n_features)).astype(np.float32)
    # One traced call: called eagerly, Keras runs the recurrence op by op, several times slower.
    expected = model.predict_on_batch(x)[..., 0]

    serving = keras_model.to_stepper(model, "v")
    state = serving.zero_state(rows)
    stepped = np.empty_like(expected)
    for t in range(x.shape[1]):
        stepped[:, t], state = serving.step(x[:, t], state)

    assert np.max(np.abs(stepped - expected)) <= 1e-5
    assert np.std(expected) > 0.02  # the comparison is not between two constants


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: s.cell)
def test_run_equals_stepping_ragged_sequences(spec: ModelSpec) -> None:
    stepper = keras_model.to_stepper(trained_looking_model(spec, seed=1), "v")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 30, spec.n_features)).astype(np.float32)
    length = np.array([30, 12, 0])
    predictions, final = stepper.run(x, length)
    for row, n in enumerate(length.tolist()):
        state = stepper.zero_state(1)
        for t in range(n):
            y, state = stepper.step(x[row : row + 1, t], state)
            assert predictions[row, t] == pytest.approx(float(y[0]), abs=1e-6)
        np.testing.assert_allclose(final[row], state[0], atol=1e-6)
        assert not predictions[row, n:].any()


def test_spec_is_read_back_from_the_keras_model() -> None:
    spec = ModelSpec(cell="gru", layers=3, units=5)
    assert keras_model.spec_of(keras_model.build(spec, seed=0)) == spec


def test_compiled_tanh_is_within_six_float32_ulps_and_keeps_nan() -> None:
    x = np.concatenate([np.linspace(-12, 12, 4001), -np.logspace(-30, 1, 1001),
                        np.logspace(-30, 1, 1001)]).astype(np.float32)  # fmt: skip
    got = np.array([stepper._tanh_one(value) for value in x], np.float32)
    exact = np.tanh(x.astype(np.float64))
    ulps = np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulps.max() <= 6
    assert np.isnan(stepper._tanh_one(np.float32("nan")))


def weights_of(spec: ModelSpec) -> tuple[list[stepper.LayerWeights], np.ndarray, np.ndarray]:
    model = random_stepper(spec)
    return model.layers, model.head_kernel, model.head_bias


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "damage",
    ["kernel rows", "recurrent columns", "bias", "head", "float64", "a layer short"],
)
def test_weights_of_another_shape_or_type_are_refused_before_any_step(
    cell: str, damage: str
) -> None:
    """The compiled step reads the weights without bounds checks: a model whose arrays do
    not fit its spec (a damaged or foreign file) must not get that far."""
    spec = ModelSpec(cell=cell, layers=2, units=4)
    layers, head_kernel, head_bias = weights_of(spec)
    first = layers[0]
    if damage == "kernel rows":
        layers[0] = replace(first, kernel=first.kernel[:-1])
    elif damage == "recurrent columns":
        layers[1] = replace(layers[1], recurrent_kernel=layers[1].recurrent_kernel[:, :-1])
    elif damage == "bias":
        layers[0] = replace(first, bias=first.bias.reshape(-1)[:-1])
    elif damage == "head":
        head_kernel = np.ones((spec.units + 1, 1), np.float32)
    elif damage == "float64":
        layers[0] = replace(first, kernel=first.kernel.astype(np.float64))
    else:
        layers = layers[:1]
    with pytest.raises(ValueError):
        stepper.Stepper(spec, "damaged", layers, head_kernel, head_bias)


def test_a_step_of_inputs_or_states_of_another_shape_raises() -> None:
    model = random_stepper(ModelSpec(layers=1, units=4))
    with pytest.raises(ValueError, match="a step takes"):
        model.step(np.zeros((2, 3), np.float32), model.zero_state(2))
    with pytest.raises(ValueError, match="a step takes"):
        model.step(np.zeros((2, 4), np.float32), model.zero_state(3))
    with pytest.raises(ValueError, match="a step takes"):
        model.step(np.zeros((2, 4), np.float32), np.zeros((2, 5), np.float32))
