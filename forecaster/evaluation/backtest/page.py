"""The backtest's HTML page: self-contained and script-free, its tables from the same
figures as ``metrics.json``, its images the PNGs, embedded."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from forecaster.evaluation.backtest.evaluate import OVERALL, SIGNIFICANCE
from forecaster.evaluation.backtest.interval_evaluation import level_key
from forecaster.evaluation.backtest.interval_plots import GOAL_POINTS, INTERVAL_PLOTS
from forecaster.evaluation.backtest.plots import PLOTS
from forecaster.evaluation.backtest.points import ORACLE
from forecaster.evaluation.backtest.styles import label, style

SECTIONS = {
    "summary": "Summary",
    "worse-than-naive": "Worse than naive?",
    "metrics": "How to read the figures",
    "kinds": "Scores per kind",
    "intervals": "Prediction intervals",
    "plots": "Plots",
    "series": "Scores per series",
}
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
INTERVAL_METRICS = {
    "coverage": "share of next prices inside their interval: the nominal coverage if "
    "calibrated (red: more than 1 point off)",
    "width": "mean width of the intervals, in basis points of the price forecast from",
    "score": "interval (Winkler) score, same unit: the width plus 2 / (1 - coverage) times "
    "how far a next price fell outside; lower is better (bold: the best at that coverage "
    "but the oracle's), and no interval does better on average than the true one",
}
INTERVAL_ROWS = {
    "empirical": "the last price times exp(+-h), h the empirical quantile of the "
    "series' past absolute log returns",
    "riskmetrics": "the last price times exp(+-z sigma), sigma RiskMetrics' exponentially "
    "weighted volatility (lambda 0.94), z the Gaussian quantile",
    "oracle": "the generator's true conditional interval",
}
BPS = 1e4


CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left;white-space:nowrap}"
    "table.intervals td,table.intervals th{padding:2px 5px}"
    "tr.worse td{background:#fde2dd}td.off{background:#fde2dd}"
    ".alarm{background:#fde2dd;border-left:6px solid #c0392b;padding:.6em 1em}"
    ".fine{background:#e3f4ea;border-left:6px solid #2e8b57;padding:.6em 1em}"
    ".swatch{display:inline-block;width:1.6em;height:.7em;margin-right:.4em;"
    "vertical-align:middle}"
    "dt{font-family:monospace;font-weight:bold;float:left;clear:left;width:12em}"
    "dd{margin:0 0 .3em 13em}img{max-width:100%}"
)


RELATIVE = "errors relative to the price forecast from"


def page_html(document: dict[str, Any], out: Path) -> str:
    kinds = "".join(
        _table("All series" if kind == OVERALL else f"Kind: {kind}", table, RELATIVE)
        for kind, table in document["kinds"].items()
    )
    plots = "".join(_plot(out, file, title) for file, title in PLOTS.items())
    interval_plots = "".join(_plot(out, file, title) for file, title in INTERVAL_PLOTS.items())
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
            _section("intervals", _intervals(document) + interval_plots),
            _section("plots", plots),
            _section("series", series),
            "</body></html>",
        ]
    )


def _intervals(document: dict[str, Any]) -> str:
    intervals = document["intervals"]
    coverage = intervals["coverage"]
    around = {cell: f"the service's intervals around the {label(cell)} model's forecasts"
              for cell in document["cells"]}  # fmt: skip
    lines = "".join(
        f"<dt>{name}</dt><dd>{html.escape(text)}</dd>" for name, text in INTERVAL_METRICS.items()
    )
    rows = "".join(
        f"<dt>{_swatch(row)}{html.escape(label(row))}</dt><dd>{html.escape(text)}</dd>"
        for row, text in {**around, **INTERVAL_ROWS}.items()
        if row in intervals["rows"]
    )
    tables = "".join(
        _interval_table("All series" if kind == OVERALL else f"Kind: {kind}", by_level, intervals)
        for kind, by_level in intervals["kinds"].items()
    )
    return (
        f"<p>Every forecast carries a central {_percent(coverage)} interval for the next price. "
        "On the same points as the scores above, each model's intervals at several nominal "
        f"coverages (the replay's own at {_percent(coverage)}; the others from the same "
        "calibration run over the replay's forecasts) next to two baselines and, where the "
        f"generator knows it, the true interval.</p><dl>{lines}</dl><dl>{rows}</dl>{tables}"
    )


def _interval_table(title: str, by_level: dict[str, Any], intervals: dict[str, Any]) -> str:
    levels = [level_key(level) for level in intervals["levels"]]
    top = "".join(f"<th colspan=3>{_percent(float(level))}</th>" for level in levels)
    names = "<th>coverage</th><th>width</th><th>score</th>" * len(levels)
    best = {level: min(scores["interval_score"] for row, scores in by_level[level].items()
                       if row != ORACLE)
            for level in levels}  # fmt: skip
    body = "".join(
        f"<tr><td>{_swatch(row)}{html.escape(label(row))}</td>"
        + "".join(
            _interval_cells(by_level[level][row], float(level), best[level]) for level in levels
        )
        + "</tr>"
        for row in intervals["rows"]
    )
    return (
        f"<h3>{html.escape(title)} <small>(width and score in bp of the price)</small></h3>"
        f"<table class=intervals><tr><th rowspan=2>row</th>{top}</tr><tr>{names}</tr>{body}"
        "</table>"
    )


def _percent(share: float) -> str:
    return f"{share * 100:g}%"


def _interval_cells(scores: dict[str, Any], level: float, best: float) -> str:
    off = abs(scores["coverage"] - level) * 100.0 > GOAL_POINTS
    score = f"{scores['interval_score'] * BPS:.2f}"
    return (
        f"<td{' class=off' if off else ''}>{scores['coverage']:.1%}</td>"
        f"<td>{scores['width'] * BPS:.2f}</td>"
        f"<td>{f'<b>{score}</b>' if scores['interval_score'] == best else score}</td>"
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
