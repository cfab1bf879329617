"""What a backtest leaves behind: ``metrics.json``, five PNGs and ``report.html`` showing them.

``plots`` and ``interval_plots`` draw the PNGs and ``page`` writes the HTML; every row
(actual, naive, the baselines, the oracle, each model) has one look from ``styles`` in
every plot, and the HTML tables mark each row with the same colour.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forecaster.evaluation.backtest.evaluate import Evaluation, Scores
from forecaster.evaluation.backtest.interval_evaluation import IntervalEvaluation, level_key
from forecaster.evaluation.backtest.interval_plots import draw_interval_plots
from forecaster.evaluation.backtest.page import page_html
from forecaster.evaluation.backtest.plots import Events, draw_plots

METRICS_FILE = "metrics.json"
HTML_FILE = "report.html"


def metrics_document(
    evaluation: Evaluation, about: dict[str, Any], events: Events | None = None
) -> dict[str, Any]:
    """The machine-readable result: every row's scores overall, per kind and per series,
    and its intervals' scores overall and per kind, at every nominal coverage; the
    retraining events of each cell's replay, when given."""
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
        "retrain_events": {
            cell: [event.to_dict() for event in cell_events]
            for cell, cell_events in (events or {}).items()
        },
        "intervals": _interval_document(evaluation.intervals),
    }


def _interval_document(intervals: IntervalEvaluation) -> dict[str, Any]:
    return {
        "coverage": intervals.coverage,
        "levels": list(intervals.levels),
        "rows": intervals.rows,
        "units": "width, interval_score and the pinball losses relative to the price "
        "forecast from; coverage a share of the points",
        "kinds": {
            kind: {
                level_key(level): {row: score.to_dict() for row, score in scores.items()}
                for level, scores in by_level.items()
            }
            for kind, by_level in intervals.per_kind.items()
        },
    }


def write_report(
    evaluation: Evaluation,
    out: Path,
    about: dict[str, Any],
    series: Sequence[str] = (),
    events: Events | None = None,
) -> dict[str, Any]:
    """Write metrics.json, the PNGs and report.html into ``out``; returns the metrics.
    ``events``: each cell's retraining events, marked on the rolling-error plot."""
    out.mkdir(parents=True, exist_ok=True)
    document = metrics_document(evaluation, about, events)
    (out / METRICS_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    chosen = list(series) or _default_series(evaluation)
    draw_plots(evaluation, chosen, out, events)
    draw_interval_plots(evaluation, chosen, out)
    (out / HTML_FILE).write_text(page_html(document, out), encoding="utf-8")
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
