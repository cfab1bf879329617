"""Benchmark 2, cost per tick: the engine's batched stateful step against the tutorial way.

The forecaster: N series each with warm state, one tick each, one ``Engine.process`` call
(features, one vectorised 2-layer LSTM step, forecasts); µs per tick = time / N. The bare
``Stepper.step`` on N rows is timed too, in the engine's blocks of ``block_rows``, both
with the service's BLAS thread limit, and the engine again with a candidate in shadow
(a second model of the same size stepped beside the serving one, at commit), batch for
batch alternating with the plain engine so that both see the same machine. Each size
steps at least ``MIN_TICKS`` ticks (``--repeats`` batches at the least): a batch of
one tick takes some 70 µs, and the median of a few such batches is their warm-up's
(the first three batches after warming took 447, 130 and 97 µs, the median of 1,000
was 70). The tutorial
way, for the same architecture: Keras ``model.predict`` on the last 60 prices of the
series, once per tick.

    python benchmarks/bench_step.py --series 1 100 1000 10000 100000 \\
        --json benchmarks/results/step.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import SERVING_SPEC, START_NS, median, parser, ratio, report

from forecaster.core.engine import Engine, EngineParams, row_blocks
from forecaster.core.ticks import TickColumns
from forecaster.runtime import serving_runtime
from tests.support.models import random_stepper

TUTORIAL_WINDOW = 60
MIN_TICKS = 10_000  # stepped at each size, so that small batches are timed by the thousand


def one_tick_each(names: list[str], tick: int, rng: np.random.Generator) -> TickColumns:
    n = len(names)
    return TickColumns(
        position=np.arange(n, dtype=np.int64),
        series=names,
        ts=np.full(n, START_NS + tick * 1_000_000, np.int64),
        price=50.0 * np.exp(rng.normal(0, 0.001, n)),
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )


def warm_engine(series: int, shadow: bool) -> tuple[Engine, list[str], np.random.Generator]:
    """An engine serving a random model to ``series`` warm series (with a candidate in
    shadow if ``shadow``)."""
    params = EngineParams(max_series=0)  # no series limit: 100,000 series all step
    engine = Engine(params, random_stepper(SERVING_SPEC, seed=1))
    names = [f"S{i:06d}" for i in range(series)]
    rng = np.random.default_rng(0)
    for tick in range(params.features.min_history + 2):
        engine.process(one_tick_each(names, tick, rng))
    if shadow:
        engine.start_shadow(random_stepper(SERVING_SPEC, seed=2, version="candidate"))
    return engine, names, rng


def engine_us_per_tick(series: int, repeats: int) -> tuple[float, float, float]:
    """Median µs per tick of Engine.process and commit, without and with a candidate in
    shadow (alternating batches), and of the bare Stepper.step, N series warm."""
    plain, names, rng = warm_engine(series, shadow=False)
    shadowed, _, _ = warm_engine(series, shadow=True)
    warm_up = plain.params.features.min_history + 2
    count = max(repeats, MIN_TICKS // series)
    batches = [one_tick_each(names, warm_up + k, rng) for k in range(count)]
    times: dict[str, list[float]] = {"plain": [], "shadow": []}
    for batch in batches:
        for name, engine in (("plain", plain), ("shadow", shadowed)):
            started = time.perf_counter()
            result = engine.process(batch)
            engine.commit()
            times[name].append((time.perf_counter() - started) / series * 1e6)
            assert not result.forecasts.naive.any()
    model = random_stepper(SERVING_SPEC, seed=1)
    x = rng.normal(size=(series, SERVING_SPEC.n_features)).astype(np.float32)
    state = model.zero_state(series)
    step = []
    for _ in range(repeats):
        started = time.perf_counter()
        for block in row_blocks(series, plain.params.block_rows):
            model.step(x[block], state[block])
        step.append((time.perf_counter() - started) / series * 1e6)
    return median(times["plain"]), median(times["shadow"]), median(step)


def tutorial_us_per_tick(ticks: int) -> float:
    """Median µs of Keras ``predict`` on a 60-price window, the tutorials' per-tick forecast."""
    import keras

    model = keras.Sequential(
        [keras.Input((TUTORIAL_WINDOW, 1))]
        + [keras.layers.LSTM(SERVING_SPEC.units, return_sequences=True)
           for _ in range(SERVING_SPEC.layers - 1)]
        + [keras.layers.LSTM(SERVING_SPEC.units), keras.layers.Dense(1)]
    )  # fmt: skip
    window = np.random.default_rng(0).normal(size=(1, TUTORIAL_WINDOW, 1)).astype(np.float32)
    model.predict(window, verbose=0)  # the first call traces the graph
    times = []
    for _ in range(ticks):
        started = time.perf_counter()
        model.predict(window, verbose=0)
        times.append((time.perf_counter() - started) * 1e6)
    return median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--series", type=int, nargs="+", default=[1, 100, 1000, 10_000, 100_000])
    args.add_argument("--tutorial-ticks", type=int, default=30, help="0 skips the Keras side")
    options = args.parse_args(argv)
    tutorial = tutorial_us_per_tick(options.tutorial_ticks) if options.tutorial_ticks else None
    results: dict[str, Any] = {"tutorial_us_per_tick": tutorial, "by_series": {}}
    with serving_runtime():  # as the service runs the step
        for series in options.series:
            process, shadowed, step = engine_us_per_tick(series, options.repeats)
            results["by_series"][str(series)] = {
                "engine_us_per_tick": process,
                "engine_with_shadow_us_per_tick": shadowed,
                "shadow_over_engine": ratio(shadowed, process),
                "stepper_us_per_series_step": step,
                "tutorial_over_engine": ratio(tutorial, process) if tutorial else None,
            }
    settings = {"model": "lstm 2x32", "series": options.series, "repeats": options.repeats,
                "tutorial_window": TUTORIAL_WINDOW,
                "tutorial_ticks": options.tutorial_ticks}  # fmt: skip
    report("step", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
