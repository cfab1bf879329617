"""The backtest's plots of prediction intervals, as PNGs: a fan chart per kind (the next
price, the forecast and its interval, zoomed) and the calibration plot (empirical against
nominal coverage, per kind). Matplotlib's Agg backend: no display."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes

from forecaster.evaluation.backtest.evaluate import OVERALL, Evaluation
from forecaster.evaluation.backtest.plots import figure_legend, save_figure
from forecaster.evaluation.backtest.points import ORACLE
from forecaster.evaluation.backtest.styles import STYLES, label, style

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FAN_PLOT = "interval_fan.png"
CALIBRATION_PLOT = "interval_calibration.png"
INTERVAL_PLOTS = {
    FAN_PLOT: "Fan chart, zoomed: per kind, the next price, each model's forecast and its "
    "interval at the service's coverage (band), the other intervals as lines; where the "
    "first model's interval widens and narrows most",
    CALIBRATION_PLOT: "Calibration: per kind, the share of next prices inside their interval "
    "against the nominal coverage (on the diagonal: calibrated), and the difference in "
    "percentage points (shaded: within 1 point)",
}
FAN_TICKS = 80
GOAL_POINTS = 1.0  # percentage points of coverage
MISS_COLOR = "#c0392b"
PERCENT = 100.0


def draw_interval_plots(evaluation: Evaluation, chosen: list[str], out: Path) -> None:
    """Every PNG of ``INTERVAL_PLOTS`` into ``out``; ``chosen`` are the series zoomed in on."""
    _plot_fan(evaluation, chosen, out / FAN_PLOT)
    _plot_calibration(evaluation, out / CALIBRATION_PLOT)


# --- fan chart ------------------------------------------------------------------------


def _plot_fan(evaluation: Evaluation, chosen: list[str], path: Path) -> None:
    scored, by_series = evaluation.scored, evaluation.points.by_series()
    chosen = [name for name in chosen if name in by_series and scored[by_series[name]].any()]
    figure, axes = plt.subplots(max(len(chosen), 1), 1, figsize=(12, 4.2 * max(len(chosen), 1)),
                                layout="constrained", squeeze=False)  # fmt: skip
    for axis, name in zip(axes[:, 0], chosen, strict=False):
        rows = by_series[name]
        _draw_fan(evaluation, name, _widest_swing(evaluation, rows[scored[rows]]), axis)
    figure_legend(figure)
    save_figure(figure, path)


def _widest_swing(evaluation: Evaluation, rows: IntArray) -> IntArray:
    """The ``FAN_TICKS`` consecutive rows over which the first model's interval, relative to
    the price, is widest against narrowest: where its adaptation shows."""
    if len(rows) <= FAN_TICKS:
        return rows
    intervals = evaluation.intervals
    lower, upper = intervals.at(evaluation.cells[0], intervals.coverage)
    width = np.log(upper[rows] / lower[rows])
    windows = np.lib.stride_tricks.sliding_window_view(width, FAN_TICKS)
    start = int(np.argmax(windows.max(axis=1) / np.maximum(windows.min(axis=1), 1e-300)))
    return rows[start : start + FAN_TICKS]


def _draw_fan(evaluation: Evaluation, name: str, rows: IntArray, axis: Axes) -> None:
    points, intervals = evaluation.points, evaluation.intervals
    when = np.arange(len(rows))
    actual = points.actual[rows]
    coverage = intervals.coverage
    for row in intervals.rows:
        lower, upper = (bound[rows] for bound in intervals.at(row, coverage))
        look = style(row)
        if row in evaluation.cells:
            axis.fill_between(when, lower, upper, color=look.color, alpha=0.22, lw=0,
                              label=f"{label(row)}'s interval", zorder=1)  # fmt: skip
            axis.plot(when, evaluation.predictions[row][rows], label=f"{label(row)} forecast",
                      **look.line())  # fmt: skip
        else:
            line = {**look.line(), "linewidth": 1.0}
            axis.plot(when, lower, label=f"{_interval_label(row)} interval", **line)
            axis.plot(when, upper, **line)
    axis.plot(when, actual, marker="o", markersize=2.5, label=label("actual"),
              **STYLES["actual"].line())  # fmt: skip
    first = evaluation.cells[0]
    first_lower, first_upper = (bound[rows] for bound in intervals.at(first, coverage))
    missed = (actual < first_lower) | (actual > first_upper)
    axis.plot(when[missed], actual[missed], linestyle="none", marker="x", markersize=8,
              color=MISS_COLOR, label=f"outside {label(first)}'s interval",
              zorder=8)  # fmt: skip
    kind = points.kind[rows[0]] if points.kind else "unknown kind"
    start = points.ts[rows[0]][:19].replace("T", " ")
    axis.set_title(
        f"{kind}: series {name}, {coverage * 100:g}% intervals over {len(rows)} scored ticks "
        f"({int((~missed).sum())} inside {label(first)}'s)",
        loc="left", fontsize=10,
    )  # fmt: skip
    axis.set_ylabel("next price (price units)")
    axis.set_xlabel(f"ticks of {name} from {start} UTC (tick forecast from)")


def _interval_label(row: str) -> str:
    return "true (oracle)" if row == ORACLE else label(row)


# --- calibration ----------------------------------------------------------------------


def _plot_calibration(evaluation: Evaluation, path: Path) -> None:
    """Per kind, two panels side by side: coverage against nominal, and the difference."""
    per_kind = evaluation.intervals.per_kind
    pairs = max((len(per_kind) + 1) // 2, 1)
    figure, axes = plt.subplots(pairs, 4, figsize=(15, 3.4 * pairs), layout="constrained",
                                squeeze=False)  # fmt: skip
    for index, kind in enumerate(per_kind):
        row, column = divmod(index, 2)
        panels = axes[row, 2 * column], axes[row, 2 * column + 1]
        _draw_calibration(evaluation, kind, *panels)
    for axis in axes.ravel()[2 * len(per_kind) :]:
        axis.set_visible(False)
    figure_legend(figure)
    save_figure(figure, path)


def _draw_calibration(evaluation: Evaluation, kind: str, levels_axis: Axes, gap_axis: Axes) -> None:
    intervals = evaluation.intervals
    nominal = np.array(intervals.levels)
    span = [nominal[0] - 0.03, 1.0]
    levels_axis.plot(span, span, color="black", lw=0.8, label="calibrated (diagonal)", zorder=1)
    gap_axis.axhspan(-GOAL_POINTS, GOAL_POINTS, color="#2e8b57", alpha=0.15, lw=0,
                     label=f"within {GOAL_POINTS:g} point", zorder=0)  # fmt: skip
    gap_axis.axhline(0.0, color="black", lw=0.8, zorder=1)
    for row in intervals.rows:
        empirical = np.array(
            [intervals.per_kind[kind][level][row].coverage for level in intervals.levels]
        )
        line = {**style(row).line(), "marker": style(row).marker, "markersize": 4}
        levels_axis.plot(nominal, empirical, label=f"{_interval_label(row)} interval", **line)
        gap_axis.plot(nominal, (empirical - nominal) * PERCENT, **line)
    title = "all series" if kind == OVERALL else kind
    levels_axis.set_title(f"{title}: coverage", loc="left", fontsize=10)
    levels_axis.set_xlabel("nominal coverage")
    levels_axis.set_ylabel("empirical coverage")
    gap_axis.set_title(f"{title}: empirical - nominal", loc="left", fontsize=10)
    gap_axis.set_xlabel("nominal coverage")
    gap_axis.set_ylabel("percentage points")
