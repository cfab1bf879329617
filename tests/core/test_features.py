import numpy as np

from forecaster.core.features import NS_PER_DAY, FeatureParams, advance, model_inputs, new_stats
from tests.support import reference_features


def run_series(
    params: FeatureParams, prices: list[float]
) -> list[tuple[float, float, float, bool]]:
    stats = new_stats(1)
    out = []
    for i, price in enumerate(prices):
        step = advance(params, stats, np.zeros(1, np.int64), np.array([price]), np.array([i]))
        out.append((float(step.z[0]), float(step.d[0]), float(step.scale[0]), bool(step.warm[0])))
    return out


def test_scale_invariance_across_price_levels() -> None:
    rng = np.random.default_rng(1)
    path = np.exp(np.cumsum(rng.normal(0, 0.002, 300)))
    params = FeatureParams(min_history=10)
    cheap = run_series(params, list(0.07 * path))
    dear = run_series(params, list(4000 * path))
    np.testing.assert_allclose([s[:2] for s in cheap], [s[:2] for s in dear], atol=1e-9)


def test_next_feature_is_the_target_of_this_step() -> None:
    """z of step t+1 is the return of t+1 standardised by the scale reported at step t."""
    rng = np.random.default_rng(2)
    prices = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 100))))
    steps = run_series(FeatureParams(min_history=5, clip=1e9), prices)
    for t in range(1, len(prices) - 1):
        ret = np.log(prices[t + 1] / prices[t])
        assert np.isclose(steps[t + 1][0], ret / steps[t][2])


def test_warm_after_min_history_returns() -> None:
    steps = run_series(FeatureParams(min_history=3), [1.0, 1.1, 1.2, 1.1, 1.0])
    assert [s[3] for s in steps] == [False, False, False, True, True]


def test_constant_prices_give_finite_features() -> None:
    steps = run_series(FeatureParams(min_history=2), [5.0] * 10 + [5.1])
    assert all(np.isfinite(s[0]) and np.isfinite(s[1]) for s in steps)
    assert abs(steps[-1][0]) == FeatureParams().clip


def test_model_inputs_time_of_day() -> None:
    day = 86_400 * 10**9
    x = model_inputs(np.zeros(3), np.zeros(3), np.array([0, day // 4, day + day // 2]))
    np.testing.assert_allclose(x[:, 2], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(x[:, 3], [1, 0, -1], atol=1e-6)
    assert x.dtype == np.float32


def test_model_inputs_equal_numpys_for_any_leading_shape_and_any_ts() -> None:
    """The compiled inputs against the formula in NumPy, ts of either sign included."""
    rng = np.random.default_rng(0)
    z, d = rng.normal(size=(30, 7)), rng.normal(size=(30, 7)).astype(np.float32)
    ts = rng.integers(-(2**62), 2**62, size=(30, 7))
    angle = (2.0 * np.pi / NS_PER_DAY) * (ts % NS_PER_DAY)
    expected = np.stack([z, d, np.sin(angle), np.cos(angle)], axis=-1).astype(np.float32)
    np.testing.assert_allclose(model_inputs(z, d, ts), expected, rtol=0, atol=1e-7)
    assert model_inputs(z[0, :0], d[0, :0], ts[0, :0]).shape == (0, 4)


def test_advance_equals_the_numpy_implementation_through_jumps_and_new_series() -> None:
    """Rows of a table of 40 series stepped in random rounds, prices from 1e-6 to 1e6
    with jumps, against ``tests/support/reference_features.py``: equal within rounding."""
    params = FeatureParams(min_history=5)
    rng = np.random.default_rng(1)
    compiled, reference = new_stats(40), new_stats(40)
    for tick in range(1500):
        rows = rng.choice(40, size=rng.integers(1, 40), replace=False)
        price = np.exp(rng.normal(0, 7, len(rows)))
        ts = np.full(len(rows), tick, np.int64)
        want_rows = reference[rows]
        got = advance(params, compiled, rows, price, ts)  # the table's rows, in place
        want = reference_features.advance(params, want_rows, price, ts)
        reference[rows] = want_rows
        for name in ("z", "d", "scale"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12)
        np.testing.assert_array_equal(got.warm, want.warm)
    for name in ("scale_sq", "level"):
        np.testing.assert_allclose(compiled[name], reference[name], rtol=1e-12)
    np.testing.assert_array_equal(compiled["n_returns"], reference["n_returns"])
    assert compiled["n_returns"].min() > 100
