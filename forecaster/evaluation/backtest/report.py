"""What a backtest leaves behind: ``metrics.json``, three PNGs and ``report.html`` showing them.

Plots use matplotlib's Agg backend (no display needed). Every row (actual, naive, the
baselines, the oracle, each model) is drawn with one style from ``STYLES`` in every
plot, and the HTML tables mark each row with the same colour. Legends sit outside the
axes. The HTML page is self-contained and script-free: its tables come from the same
figures as ``metrics.json`` and its images are the PNGs, embedded.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from forecaster.evaluation.backtest.evaluate import OVERALL, SIGNIFICANCE, Evaluation, Scores

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METRICS_FILE = "metrics.json"
HTML_FILE = "report.html"
FORECASTS_PLOT = "forecast_vs_actual.png"
ROLLING_PLOT = "rolling_mae.png"
ERRORS_PLOT = "error_distribution.png"
PLOTS = {
    FORECASTS_PLOT: "Forecast vs actual, zoomed: per kind, the stretch where the forecasts "
    "differ most, and each forecast's error against naive's",
    ROLLING_PLOT: "Rolling MAE over time, and relative to naive's; retrains marked per model",
    ERRORS_PLOT: "Distribution of forecast errors (relative to price)",
}
SECTIONS = {
    "summary": "Summary",
    "worse-than-naive": "Worse than naive?",
    "metrics": "How to read the figures",
    "kinds": "Scores per kind",
    "plots": "Plots",
    "series": "Scores per series",
}
ZOOM_TICKS = 40
ROLLING_POINTS = 600
BPS = 1e4
DPI = 90
COLUMNS = ("points", "mae", "rmse", "mase", "directional_accuracy", "calls", "call_hit_rate",
           "dm_stat", "dm_pvalue")  # fmt: skip
METRICS = {
    "points": "forecasts scored: every model forecast it, after the series' tuning part",
    "mae": "mean absolute error: price units per series, share of the price per kind",
    "rmse": "root mean squared error, same units as mae: punishes large misses more",
    "mase": "mae over the naive forecast's mae on the same points: below 1 beats naive",
    "directional_accuracy": "share of price moves whose direction the forecast called; "
    "not calling one (forecasting the last price) is a miss, so naive scores 0",
    "calls": "share of price moves on which the forecast called a direction at all",
    "call_hit_rate": "directional_accuracy / calls: how often a call was right; 0.5 is a coin",
    "dm_stat": "Diebold-Mariano statistic of absolute errors against naive's: below -1.96 "
    "significantly better, above +1.96 significantly worse (5%)",
    "dm_pvalue": "two-sided p-value of dm_stat: below 0.05, the difference to naive is "
    "significant however small it is",
}
ROWS = {
    "actual": "the price that came next",
    "naive": "the last price",
    "drift": "last price plus the series' average step so far",
    "ewma": "simple exponential smoothing",
    "holt": "Holt's linear trend",
    "oracle": "the generator's true conditional forecast: the best possible",
}


@dataclass(frozen=True)
class Style:
    """How one row is drawn everywhere: line, retrain marker and table swatch."""

    color: str
    linestyle: str | tuple[float, tuple[float, ...]]
    linewidth: float
    alpha: float
    zorder: float
    marker: str = "D"  # marks the row's retrains (models only)

    def line(self) -> dict[str, Any]:
        return {
            "color": self.color,
            "linestyle": self.linestyle,
            "linewidth": self.linewidth,
            "alpha": self.alpha,
            "zorder": self.zorder,
        }


# Okabe-Ito colours (colour-blind safe). The models are drawn last: LSTM wide and
# translucent, GRU thin and dashed on top, so identical forecasts still show both.
STYLES = {
    "actual": Style("#000000", "-", 1.2, 1.0, 2.0),
    "naive": Style("#7f7f7f", (0, (6.0, 3.0)), 1.6, 1.0, 3.0),
    "drift": Style("#cc79a7", "-.", 1.2, 0.9, 3.1),
    "ewma": Style("#56b4e9", (0, (1.0, 1.5)), 1.4, 0.9, 3.2),
    "holt": Style("#e69f00", (0, (4.0, 1.5, 1.0, 1.5)), 1.2, 0.9, 3.3),
    "oracle": Style("#009e73", (0, (1.0, 1.0)), 2.2, 0.9, 4.0),
    "lstm": Style("#0072b2", "-", 3.6, 0.65, 5.0, marker="v"),
    "gru": Style("#d55e00", (0, (3.0, 1.5)), 1.6, 1.0, 6.0, marker="^"),
}
OTHER = Style("#8c564b", (0, (5.0, 1.0, 1.0, 1.0, 1.0, 1.0)), 1.3, 1.0, 5.5, marker="s")


def style(row: str) -> Style:
    return STYLES.get(row, OTHER)


def label(row: str) -> str:
    return row.upper() if row in ("lstm", "gru") else row


def metrics_document(evaluation: Evaluation, about: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable result: every row's scores overall, per kind and per series."""
    points = evaluation.points

    def table(scores: dict[str, Scores]) -> dict[str, Any]:
        return {row: score.to_dict() for row, score in scores.items()}

    return {
        **about,
        "cells": evaluation.cells,
        "rows": evaluation.rows,
        "scored_points": int(evaluation.scored.sum()),
        "units": {
            "series": "mae and rmse in price units",
            "kinds": "mae and rmse relative to the price forecast from",
        },
        "worse_than_naive": [flag.to_dict() for flag in evaluation.worse_than_naive()],
        "kinds": {kind: table(scores) for kind, scores in evaluation.per_kind.items()},
        "series": {name: table(scores) for name, scores in evaluation.per_series.items()},
        "retrains": {
            cell: [
                {
                    "ts": points.ts[i],
                    "series": points.series[i],
                    "version": points.versions[cell][i],
                }
                for i in events.tolist()
            ]
            for cell, events in evaluation.retrains.items()
        },
    }


def write_report(
    evaluation: Evaluation, out: Path, about: dict[str, Any], series: Sequence[str] = ()
) -> dict[str, Any]:
    """Write metrics.json, the PNGs and report.html into ``out``; returns the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    document = metrics_document(evaluation, about)
    (out / METRICS_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    chosen = list(series) or _default_series(evaluation)
    _plot_forecasts(evaluation, chosen, out / FORECASTS_PLOT)
    _plot_rolling_mae(evaluation, out / ROLLING_PLOT)
    _plot_errors(evaluation, out / ERRORS_PLOT)
    (out / HTML_FILE).write_text(_html(document, out), encoding="utf-8")
    return document


def _default_series(evaluation: Evaluation) -> list[str]:
    """The first scored series of each kind (or the first four scored series)."""
    names = list(evaluation.per_series)
    kinds = evaluation.points.kind
    if kinds is None:
        return names[:4]
    kind_of = dict(zip(evaluation.points.series, kinds, strict=True))
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(kind_of[name], name)
    return list(first.values())


def _stamps(evaluation: Evaluation, rows: IntArray) -> npt.NDArray[np.datetime64]:
    ts = evaluation.points.ts
    return np.array([ts[i].rstrip("Z") for i in rows.tolist()], "datetime64[ns]")


def _hours(evaluation: Evaluation, rows: IntArray) -> FloatArray:
    """Hours from the first tick of the file to the ticks at ``rows``."""
    start = np.datetime64(min(evaluation.points.ts).rstrip("Z"), "ns")
    hours: FloatArray = (_stamps(evaluation, rows) - start) / np.timedelta64(3600, "s")
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
    _legend(figure)
    _save(figure, path)


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


def _plot_rolling_mae(evaluation: Evaluation, path: Path) -> None:
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
        level.set_title(f"MAE of the last {window} scored forecasts, all series", loc="left")
        level.set_ylabel("rolling MAE\n(bp of price)")
        ratio.set_title("the same, over naive's: below 1 beats naive", loc="left")
        ratio.set_ylabel("rolling MAE / naive's\n(ratio)")
        ratio.set_xlabel("hours since the first tick of the file (h)")
    _legend(figure)
    _save(figure, path)


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
    _legend(figure)
    _save(figure, path)


def _legend(figure: Figure) -> None:
    """One legend for the whole figure, right of the axes, each row once."""
    handles: dict[str, Any] = {}
    for axis in figure.axes:
        for handle, text in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(text, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside right upper",
                      fontsize=9)  # fmt: skip


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


# --- HTML -----------------------------------------------------------------------------

CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "tr.worse td{background:#fde2dd}"
    ".alarm{background:#fde2dd;border-left:6px solid #c0392b;padding:.6em 1em}"
    ".fine{background:#e3f4ea;border-left:6px solid #2e8b57;padding:.6em 1em}"
    ".swatch{display:inline-block;width:1.6em;height:.7em;margin-right:.4em;"
    "vertical-align:middle}"
    "dt{font-family:monospace;font-weight:bold;float:left;clear:left;width:12em}"
    "dd{margin:0 0 .3em 13em}img{max-width:100%}"
)


RELATIVE = "errors relative to the price forecast from"


def _html(document: dict[str, Any], out: Path) -> str:
    kinds = "".join(
        _table("All series" if kind == OVERALL else f"Kind: {kind}", table, RELATIVE)
        for kind, table in document["kinds"].items()
    )
    plots = "".join(_plot(out, file, title) for file, title in PLOTS.items())
    series = "".join(
        _table(f"Series {name}", table, "errors in price units")
        for name, table in document["series"].items()
    )
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'><title>forecaster backtest</title>",
            f"<style>{CSS}</style></head><body>",
            f"<h1>Backtest of {html.escape(str(document.get('input', '')))}</h1>",
            _summary(document),
            _section("worse-than-naive", _worse_sentence(document)),
            _section("metrics", _metric_lines(document)),
            _section("kinds", kinds),
            _section("plots", plots),
            _section("series", series),
            "</body></html>",
        ]
    )


def _section(anchor: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{SECTIONS[anchor]}</h2>{body}</section>"


def _summary(document: dict[str, Any]) -> str:
    cells = ", ".join(label(cell) for cell in document["cells"])
    overall = document["kinds"].get(OVERALL, {})
    mase = "; ".join(
        f"{label(cell)} {_format('mase', overall[cell]['mase'])}"
        for cell in document["cells"]
        if cell in overall
    )
    body = (
        f"<p>{document['scored_points']} scored forecasts of the models {html.escape(cells)}, "
        f"against the baselines and, when known, the oracle. Overall MASE (below 1 beats the "
        f"naive forecast): {html.escape(mase)}.</p>"
    )
    return _section("summary", body)


def _worse_sentence(document: dict[str, Any]) -> str:
    flags = document["worse_than_naive"]
    if not flags:
        return (
            "<p class='fine'>No model is significantly worse than naive on any series or "
            f"kind (Diebold-Mariano, p &lt; {SIGNIFICANCE}).</p>"
        )
    listed = "; ".join(
        f"<b>{label(flag['row'])}</b> on {flag['scope']} <b>{html.escape(flag['name'])}</b> "
        f"(MASE {_format('mase', flag['mase'])}, DM {_format('dm_stat', flag['dm_stat'])}, "
        f"p {_format('dm_pvalue', flag['dm_pvalue'])})"
        for flag in flags
    )
    return (
        f"<p class='alarm'>&#9888; Significantly worse than naive (Diebold-Mariano, "
        f"p &lt; {SIGNIFICANCE}), however small the effect: {listed}. Such a model is "
        "confidently wrong there: its errors are larger than the last price's, not by "
        "chance. These rows are marked in the tables below.</p>"
    )


def _metric_lines(document: dict[str, Any]) -> str:
    metrics = "".join(
        f"<dt>{column}</dt><dd>{html.escape(text)}</dd>" for column, text in METRICS.items()
    )
    rows = "".join(
        f"<dt>{_swatch(row)}{html.escape(label(row))}</dt><dd>{html.escape(text)}</dd>"
        for row, text in {**ROWS, **_model_rows(document)}.items()
        if row == "actual" or row in document["rows"]
    )
    return (
        f"<p>Every figure, one line each:</p><dl>{metrics}</dl>"
        f"<p>Every row, drawn in the same colour and line in every plot:</p><dl>{rows}</dl>"
    )


def _model_rows(document: dict[str, Any]) -> dict[str, str]:
    return {cell: f"the service's {label(cell)} model" for cell in document["cells"]}


def _swatch(row: str) -> str:
    look = style(row)
    return f"<span class='swatch' style='background:{look.color}'></span>"


def _plot(out: Path, file: str, title: str) -> str:
    data = base64.b64encode((out / file).read_bytes()).decode("ascii")
    return (
        f"<h3>{html.escape(title)}</h3>"
        f"<img src='data:image/png;base64,{data}' alt='{html.escape(file)}'>"
    )


def _table(title: str, table: dict[str, dict[str, Any]], units: str) -> str:
    header = "".join(f"<th>{column}</th>" for column in ("row", *COLUMNS))
    body = "".join(_table_row(row, scores) for row, scores in table.items())
    return (
        f"<h3>{html.escape(title)} <small>({units})</small></h3>"
        f"<table><tr>{header}</tr>{body}</table>"
    )


def _table_row(row: str, scores: dict[str, Any]) -> str:
    worse = bool(scores.get("worse_than_naive"))
    name = _swatch(row) + html.escape(label(row))
    if worse:
        name += " <b title='significantly worse than naive (Diebold-Mariano, 5%)'>&#9888; worse</b>"
    cells = "".join(f"<td>{_format(column, scores[column])}</td>" for column in COLUMNS)
    return f"<tr{' class=worse' if worse else ''}><td>{name}</td>{cells}</tr>"


def _format(column: str, value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, int):
        return str(value)
    if column == "mase":
        return f"{value:.4f}"
    if column == "dm_stat":
        return f"{value:+.2f}"
    if column == "dm_pvalue":
        return f"{value:.3f}" if value >= 0.001 else f"{value:.0e}"
    if column in ("directional_accuracy", "calls", "call_hit_rate"):
        return f"{value:.3f}"
    return f"{value:.4g}"
