"""What a backtest leaves behind: ``metrics.json``, three PNGs and ``report.html`` showing them.

Plots use matplotlib's Agg backend (no display needed). The HTML page is self-contained:
its tables come from the same figures as ``metrics.json`` and its images are the PNGs,
embedded.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from forecaster.backtest.evaluate import OVERALL, Evaluation, Scores

FloatArray = npt.NDArray[np.float64]

METRICS_FILE = "metrics.json"
HTML_FILE = "report.html"
PLOTS = {
    "forecast_vs_actual.png": "Forecast vs actual (last scored ticks of each chosen series)",
    "rolling_mae.png": "Rolling MAE vs naive over time (relative to price); retrains marked",
    "error_distribution.png": "Distribution of forecast errors (relative to price)",
}
SHOWN_TICKS = 150
BPS = 1e4
COLUMNS = ("points", "mae", "rmse", "mase", "directional_accuracy", "dm_stat", "dm_pvalue")


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
    _plot_forecasts(evaluation, chosen, out / "forecast_vs_actual.png")
    _plot_rolling_mae(evaluation, out / "rolling_mae.png")
    _plot_errors(evaluation, out / "error_distribution.png")
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


def _hours(evaluation: Evaluation, rows: npt.NDArray[np.int64]) -> FloatArray:
    """Hours from the first tick of the file to the ticks at ``rows``."""
    stamps = np.array([ts.rstrip("Z") for ts in evaluation.points.ts], "datetime64[ns]")
    hours: FloatArray = (stamps[rows] - stamps.min()) / np.timedelta64(3600, "s")
    return hours


def _plot_forecasts(evaluation: Evaluation, chosen: list[str], path: Path) -> None:
    points, scored = evaluation.points, evaluation.scored
    by_series = points.by_series()
    chosen = [name for name in chosen if name in by_series and scored[by_series[name]].any()]
    figure, axes = plt.subplots(
        max(len(chosen), 1), 1, figsize=(11, 3.2 * max(len(chosen), 1)), squeeze=False
    )
    for axis, name in zip(axes[:, 0], chosen, strict=False):
        rows = by_series[name]
        rows = rows[scored[rows]][-SHOWN_TICKS:]
        when = _hours(evaluation, rows)
        axis.plot(when, points.actual[rows], color="black", lw=1.4, label="actual next price")
        for row in [*evaluation.cells, "oracle"]:
            if row in evaluation.predictions:
                axis.plot(when, evaluation.predictions[row][rows], lw=0.9, label=row)
        axis.set_title(name)
        axis.set_xlabel("hours since the first tick")
        axis.legend(loc="upper left", fontsize=8)
    _save(figure, path)


def _relative_errors(evaluation: Evaluation, row: str) -> FloatArray:
    points, rows = evaluation.points, np.flatnonzero(evaluation.scored)
    errors: FloatArray = (evaluation.predictions[row][rows] - points.actual[rows]) / points.price[
        rows
    ]
    return errors


def _shown_rows(evaluation: Evaluation) -> list[str]:
    return [*evaluation.cells, "naive", *(["oracle"] if "oracle" in evaluation.predictions else [])]


def _plot_rolling_mae(evaluation: Evaluation, path: Path) -> None:
    rows = np.flatnonzero(evaluation.scored)
    figure, axis = plt.subplots(figsize=(11, 4))
    if len(rows):
        window = max(50, len(rows) // 40)
        when = _hours(evaluation, rows)
        for row in _shown_rows(evaluation):
            absolute = np.abs(_relative_errors(evaluation, row)) * BPS
            rolling = np.convolve(absolute, np.ones(window) / window, mode="valid")
            axis.plot(when[window - 1 :], rolling, lw=1.0, label=row)
        for cell, events in evaluation.retrains.items():
            for index, moment in enumerate(_hours(evaluation, events).tolist()):
                label = f"{cell} retrained" if index == 0 else "_nolegend_"
                axis.axvline(moment, color="grey", ls=":", label=label)
        axis.set_ylabel(f"MAE over {window} ticks (bp of price)")
        axis.set_xlabel("hours since the first tick")
        axis.legend(loc="upper right", fontsize=8)
    _save(figure, path)


def _plot_errors(evaluation: Evaluation, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(11, 4))
    if evaluation.scored.any():
        errors = {row: _relative_errors(evaluation, row) * BPS for row in _shown_rows(evaluation)}
        limit = float(np.quantile(np.abs(np.concatenate(list(errors.values()))), 0.99))
        bins = np.linspace(-limit, limit, 80)
        for row, values in errors.items():
            axis.hist(values, bins=bins.tolist(), histtype="step", lw=1.2, label=row)
        axis.set_xlabel("forecast - actual (bp of price)")
        axis.legend(loc="upper right", fontsize=8)
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _html(document: dict[str, Any], out: Path) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>forecaster backtest</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}</style></head><body>",
        f"<h1>Backtest of {html.escape(str(document.get('input', '')))}</h1>",
        f"<p>{document['scored_points']} scored forecasts; cells: "
        f"{html.escape(', '.join(document['cells']))}. MASE &lt; 1 beats the naive forecast; "
        "a DM statistic below -1.96 does so significantly (5%).</p>",
    ]
    for kind, table in document["kinds"].items():
        title = "All series" if kind == OVERALL else f"Kind: {kind}"
        parts.append(_table(f"{title} (errors relative to price)", table))
    for file, title in PLOTS.items():
        data = base64.b64encode((out / file).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{data}'>")
    for name, table in document["series"].items():
        parts.append(_table(f"Series {name} (errors in price units)", table))
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(title: str, table: dict[str, dict[str, Any]]) -> str:
    header = "".join(f"<th>{column}</th>" for column in ("row", *COLUMNS))
    body = "".join(
        "<tr>"
        + f"<td>{html.escape(row)}</td>"
        + "".join(f"<td>{_cell(scores[column])}</td>" for column in COLUMNS)
        + "</tr>"
        for row, scores in table.items()
    )
    return f"<h2>{html.escape(title)}</h2><table><tr>{header}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
