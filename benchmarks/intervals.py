"""Choose the interval method by measurement: coverage and interval score of the engine's
intervals around naive forecasts, per kind of the sample data, for several settings.

Methods compared (both on log residuals over the engine's blended scale, whose fast part
has a half-life of ``halflife`` ticks; see forecaster/core/intervals.py):
  tracker   conformal quantile tracking, the engine's method, at ``--steps``;
  gaussian  the same scale, a fixed Gaussian quantile (no calibration: step ~ 0).

    python benchmarks/intervals.py                      # the sample data, 0.8/0.9/0.95
    python benchmarks/intervals.py --ticks other.csv --oracle other_oracle.csv

Prints one row per (method, step, half-life, coverage, kind): empirical coverage, mean
relative width and mean relative interval (Winkler) score, in basis points of price,
over each series' intervals after its first MIN_RESIDUALS (which take the cold scale).
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

import pandas as pd

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.intervals import MIN_RESIDUALS, IntervalParams
from forecaster.core.ticks import parse_csv_frame

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
BPS = 1e4
GAUSSIAN_STEP = 1e-9  # a tracker that never moves: the Gaussian quantile on the EW scale


def scored(ticks: pd.DataFrame, params: IntervalParams) -> pd.DataFrame:
    """Per tick after a series' first: the interval issued at its previous tick, and the price."""
    columns = parse_csv_frame(ticks).ticks
    forecasts = Engine(replace(EngineParams(), intervals=params)).process(columns).forecasts
    frame = pd.DataFrame(
        {
            "series": forecasts.ticks.series,
            "price": forecasts.ticks.price,
            "lower": forecasts.previous_lower,
            "upper": forecasts.previous_upper,
        }
    )
    frame = frame[frame["lower"] > 0]
    # A series' first intervals take the cold scale by design: score the steady state.
    return frame[frame.groupby("series").cumcount() >= MIN_RESIDUALS]


def figures(frame: pd.DataFrame, coverage: float) -> dict[str, float]:
    price, lower, upper = frame["price"], frame["lower"], frame["upper"]
    alpha = 1.0 - coverage
    below, above = (lower - price).clip(lower=0), (price - upper).clip(lower=0)
    winkler = (upper - lower) + 2.0 / alpha * (below + above)
    return {
        "coverage": float(((lower <= price) & (price <= upper)).mean()),
        "width_bp": float(((upper - lower) / price).mean() * BPS),
        "score_bp": float((winkler / price).mean() * BPS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=Path, default=SAMPLE / "ticks.csv")
    parser.add_argument("--oracle", type=Path, default=SAMPLE / "oracle.csv")
    parser.add_argument("--coverages", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--steps", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--halflives", type=float, nargs="+", default=[8.0, 16.0, 32.0, 64.0])
    options = parser.parse_args()
    ticks = pd.read_csv(options.ticks, dtype=str, keep_default_na=False)
    kinds = pd.read_csv(options.oracle, dtype=str).groupby("series")["kind"].first()
    methods = [("tracker", step) for step in options.steps] + [("gaussian", GAUSSIAN_STEP)]
    print("method   step  halflife coverage kind       empirical width_bp score_bp")
    for (method, step), halflife, coverage in itertools.product(
        methods, options.halflives, options.coverages
    ):
        params = IntervalParams(coverage=coverage, step=step, halflife=halflife)
        frame = scored(ticks, params)
        frame["kind"] = frame["series"].map(kinds)
        for kind, rows in [("all", frame), *frame.groupby("kind")]:
            f = figures(rows, coverage)
            shown = 0.0 if method == "gaussian" else step
            print(f"{method:8} {shown:5.2f} {halflife:8.0f} {coverage:8.2f} {kind:10} "
                  f"{f['coverage']:9.4f} {f['width_bp']:8.1f} {f['score_bp']:8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
