"""The backtest's plots, as PNGs: forecast vs actual zoomed per kind, rolling MAE with the
retrains marked (every promotion from the forecasts' model versions; every trigger and
rejection from the replay's events), and the distribution of errors. Matplotlib's Agg
backend: no display."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from forecaster.evaluation.backtest.evaluate import Evaluation
from forecaster.evaluation.backtest.styles import STYLES, label, style
from forecaster.retraining.events import RetrainEvent

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Events = Mapping[str, Sequence[RetrainEvent]]  # a replay's retraining events, by cell

FORECASTS_PLOT = "forecast_vs_actual.png"
ROLLING_PLOT = "rolling_mae.png"
ERRORS_PLOT = "error_distribution.png"
PLOTS = {
    FORECASTS_PLOT: "Forecast vs actual, zoomed: per kind, the stretch where the forecasts "
    "differ most, and each forecast's error against naive's",
    ROLLING_PLOT: "Rolling MAE over time, and relative to naive's; per model, its promotions "
    "(lines), retrain triggers (triangles) and rejected candidates (crosses)",
    ERRORS_PLOT: "Distribution of forecast errors (relative to price)",
}
ZOOM_TICKS = 40
# shapes no row's style uses (styles.py): a retrain trigger's marker names the trigger
TRIGGER_MARKERS = {"bootstrap": "p", "decay": "*", "manual": "h", "interval": ">", "cron": "<",
                   "ticks": "d"}  # fmt: skip
ROLLING_POINTS = 600
BPS = 1e4
DPI = 90


def draw_plots(
    evaluation: Evaluation, chosen: list[str], out: Path, events: Events | None = None
) -> None:
    """Every PNG of ``PLOTS`` into ``out``; ``chosen`` are the series zoomed in on."""
    _plot_forecasts(evaluation, chosen, out / FORECASTS_PLOT)
    save_figure(rolling_mae_figure(evaluation, events or {}), out / ROLLING_PLOT)
    _plot_errors(evaluation, out / ERRORS_PLOT)


def _stamps(evaluation: Evaluation, rows: IntArray) -> npt.NDArray[np.datetime64]:
    ts = evaluation.points.ts
    return np.array([ts[i].rstrip("Z") for i in rows.tolist()], "datetime64[ns]")


def _hours(evaluation: Evaluation, rows: IntArray) -> FloatArray:
    """Hours from the first tick of the file to the ticks at ``rows``."""
    return _hours_since_start(evaluation, _stamps(evaluation, rows))


def _hours_since_start(evaluation: Evaluation, stamps: npt.NDArray[np.datetime64]) -> FloatArray:
    start = np.datetime64(min(evaluation.points.ts).rstrip("Z"), "ns")
    hours: FloatArray = (stamps - start) / np.timedelta64(3600, "s")
    return hours


def _forecast_rows(evaluation: Evaluation) -> list[str]:
    """Rows drawn in the plots, back to front: naive, the oracle, then the models."""
    oracle = ["oracle"] if "oracle" in evaluation.predictions else []
    return ["naive", *oracle, *evaluation.cells]


# --- forecast vs actual ---------------------------------------------------------------


def _plot_forecasts(evaluation: Evaluation, chosen: list[str], path: Path) -> None:
    scored, by_series = evaluation.scored, evaluation.points.by_series()
    chosen = [name for name in chosen if name in by_series and scored[by_series[name]].any()]
    count = max(len(chosen), 1)
    figure, axes = plt.subplots(
        2 * count, 1, figsize=(12, 5.2 * count), height_ratios=[2.0, 1.2] * count,
        layout="constrained", squeeze=False,
    )  # fmt: skip
    for index, name in enumerate(chosen):
        rows = by_series[name]
        window = _busiest_window(evaluation, rows[scored[rows]], ZOOM_TICKS)
        _draw_window(evaluation, name, window, axes[2 * index, 0], axes[2 * index + 1, 0])
    figure_legend(figure)
    save_figure(figure, path)


def _busiest_window(evaluation: Evaluation, rows: IntArray, width: int) -> IntArray:
    """The ``width`` consecutive rows where the forecasts spread most, relative to the
    window's price range: where the difference between forecasts is visible."""
    if len(rows) <= width:
        return rows
    shown = np.vstack([evaluation.predictions[row][rows] for row in _forecast_rows(evaluation)])
    every = np.vstack([shown, evaluation.points.actual[rows]])
    windows = np.lib.stride_tricks.sliding_window_view
    spread = windows(shown.max(axis=0) - shown.min(axis=0), width).mean(axis=1)
    span = windows(every.max(axis=0), width).max(axis=1) - windows(every.min(axis=0), width).min(
        axis=1
    )
    start = int(np.argmax(spread / np.maximum(span, np.finfo(float).tiny)))
    return rows[start : start + width]


def _draw_window(
    evaluation: Evaluation, name: str, rows: IntArray, price_axis: Axes, error_axis: Axes
) -> None:
    points = evaluation.points
    when = np.arange(len(rows))
    actual = points.actual[rows]
    kind = points.kind[rows[0]] if points.kind else "unknown kind"
    price_axis.plot(when, actual, marker="o", markersize=3, label=label("actual"),
                    **STYLES["actual"].line())  # fmt: skip
    error_axis.fill_between(when, 0, points.price[rows] - actual, color=STYLES["naive"].color,
                            alpha=0.3, lw=0, label="naive's error (band)", zorder=1)  # fmt: skip
    error_axis.axhline(0, color="black", lw=0.6, zorder=1.5)
    for row in _forecast_rows(evaluation):
        forecast = evaluation.predictions[row][rows]
        price_axis.plot(when, forecast, label=label(row), **style(row).line())
        if row != "naive":  # naive's error is the band
            error_axis.plot(when, forecast - actual, label=label(row), **style(row).line())
    start = points.ts[rows[0]][:19].replace("T", " ")
    price_axis.set_title(
        f"{kind}: series {name}, the {len(rows)} scored ticks where the forecasts differ most",
        loc="left", fontsize=10,
    )  # fmt: skip
    price_axis.set_ylabel("next price (price units)")
    error_axis.set_title(f"{kind}: {name}, errors against naive's (inside the grey band: "
                         "closer than naive)", loc="left", fontsize=9)  # fmt: skip
    error_axis.set_ylabel("forecast - actual\n(price units)")
    error_axis.set_xlabel(f"ticks of {name} from {start} UTC (tick forecast from)")


# --- rolling MAE ----------------------------------------------------------------------


def _relative_errors(evaluation: Evaluation, row: str) -> FloatArray:
    points, rows = evaluation.points, np.flatnonzero(evaluation.scored)
    forecast = evaluation.predictions[row][rows]
    errors: FloatArray = (forecast - points.actual[rows]) / points.price[rows]
    return errors


def rolling_mae_figure(evaluation: Evaluation, events: Events) -> Figure:
    """The rolling MAE, overall and over naive's, with each cell's retrains marked."""
    rows = np.flatnonzero(evaluation.scored)
    figure, (level, ratio) = plt.subplots(
        2, 1, figsize=(12, 6.5), sharex=True, height_ratios=[1.4, 1.0], layout="constrained"
    )
    if len(rows):
        window = max(50, len(rows) // 40)
        # Thinned to a few hundred points so that dashed and dotted lines stay readable.
        keep = slice(None, None, max(1, (len(rows) - window) // ROLLING_POINTS))
        when = _hours(evaluation, rows)[window - 1 :][keep]
        rolling = {
            row: _rolling_mean(np.abs(_relative_errors(evaluation, row)) * BPS, window)[keep]
            for row in _forecast_rows(evaluation)
        }
        for row, values in rolling.items():
            level.plot(when, values, label=label(row), **style(row).line())
            ratio.plot(when, values / rolling["naive"], label=label(row), **style(row).line())
        _mark_retrains(evaluation, (level, ratio))
        _mark_events(evaluation, events, level)
        level.set_title(f"MAE of the last {window} scored forecasts, all series", loc="left")
        level.set_ylabel("rolling MAE\n(bp of price)")
        ratio.set_title("the same, over naive's: below 1 beats naive", loc="left")
        ratio.set_ylabel("rolling MAE / naive's\n(ratio)")
        ratio.set_xlabel("hours since the first tick of the file (h)")
    figure_legend(figure)
    return figure


def _rolling_mean(values: FloatArray, window: int) -> FloatArray:
    rolled: FloatArray = np.convolve(values, np.ones(window) / window, mode="valid")
    return rolled


def _mark_retrains(evaluation: Evaluation, axes: Iterable[Axes]) -> None:
    """A line per retrain in the model's colour and style, and its marker above the plot."""
    for offset, (cell, events) in enumerate(evaluation.retrains.items()):
        moments = _hours(evaluation, events)
        look = style(cell)
        for axis in axes:
            for moment in moments.tolist():
                axis.axvline(moment, color=look.color, linestyle=look.linestyle, lw=1.0,
                             alpha=0.8, zorder=1)  # fmt: skip
        top = next(iter(axes))
        top.plot(moments, np.full(len(moments), 0.96 - 0.08 * offset), linestyle="none",
                 marker=look.marker, markersize=9, color=look.color, clip_on=False,
                 transform=top.get_xaxis_transform(), label=f"{label(cell)} retrained",
                 zorder=7)  # fmt: skip


def _mark_events(evaluation: Evaluation, events: Events, axis: Axes) -> None:
    """Per cell, a marker at the top of ``axis`` where each retrain was triggered (its
    shape names the trigger) and a cross where a candidate was rejected, by the gate or
    in shadow; its promotions are the lines of ``_mark_retrains``."""
    for offset, (cell, cell_events) in enumerate(events.items()):
        for text, (marker, marked) in _event_marks(label(cell), cell_events).items():
            stamps = np.array([event.ts for event in marked], np.int64).astype("datetime64[ns]")
            moments = _hours_since_start(evaluation, stamps)
            axis.plot(moments, np.full(len(moments), 0.88 - 0.08 * offset), linestyle="none",
                      marker=marker, markersize=8, color=style(cell).color, clip_on=False,
                      label=text, transform=axis.get_xaxis_transform(), zorder=7)  # fmt: skip


def _event_marks(
    name: str, events: Sequence[RetrainEvent]
) -> dict[str, tuple[str, list[RetrainEvent]]]:
    """Legend text -> (marker, its events): the starts of each trigger, and the rejections."""
    marks: dict[str, tuple[str, list[RetrainEvent]]] = {}
    for event in events:
        if event.kind == "trigger":
            text, marker = f"{name} retrain triggered: {event.what}", TRIGGER_MARKERS[event.what]
        elif event.rejection:
            text, marker = f"{name} candidate rejected", "x"
        else:
            continue
        marks.setdefault(text, (marker, []))[1].append(event)
    return marks


# --- error distribution ---------------------------------------------------------------


def _plot_errors(evaluation: Evaluation, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(12, 4), layout="constrained")
    if evaluation.scored.any():
        errors = {row: _relative_errors(evaluation, row) * BPS
                  for row in _forecast_rows(evaluation)}  # fmt: skip
        limit = float(np.quantile(np.abs(np.concatenate(list(errors.values()))), 0.99))
        bins = np.linspace(-limit, limit, 80)
        for row, values in errors.items():
            axis.hist(values, bins=bins.tolist(), histtype="step", label=label(row),
                      **style(row).line())  # fmt: skip
        axis.set_title("all scored forecasts; the central 99% of errors", loc="left")
        axis.set_xlabel("forecast - actual (bp of the price forecast from)")
        axis.set_ylabel("forecasts per bin")
    figure_legend(figure)
    save_figure(figure, path)


def figure_legend(figure: Figure) -> None:
    """One legend for the whole figure, right of the axes, each row once."""
    handles: dict[str, Any] = {}
    for axis in figure.axes:
        for handle, text in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside right upper",
                      fontsize=9)  # fmt: skip


def save_figure(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
