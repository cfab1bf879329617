"""The backtest report on forecasts written by hand (no model, no TensorFlow, no browser)."""

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from forecaster.config import Settings
from forecaster.evaluation.backtest.evaluate import Evaluation, evaluate
from forecaster.evaluation.backtest.interval_baselines import INTERVAL_BASELINES
from forecaster.evaluation.backtest.interval_evaluation import LEVELS, IntervalScores, level_key
from forecaster.evaluation.backtest.interval_plots import INTERVAL_PLOTS
from forecaster.evaluation.backtest.page import COLUMNS, METRICS
from forecaster.evaluation.backtest.plots import (
    TRIGGER_MARKERS,
    ZOOM_TICKS,
    _busiest_window,
    rolling_mae_figure,
)
from forecaster.evaluation.backtest.points import load_points
from forecaster.evaluation.backtest.report import HTML_FILE, write_report
from forecaster.evaluation.backtest.styles import OTHER, STYLES
from forecaster.ops.metrics import RETRAIN_TRIGGERS
from forecaster.retraining.events import RetrainEvent
from forecaster.timestamps import rfc3339_ns

N = 600
FIRST_MODEL = 60
NOISY = "A"  # LSTM forecasts it badly: the last price plus noise


def write_replay(
    path: Path, prices: dict[str, np.ndarray], forecasts: dict[str, np.ndarray]
) -> None:
    with path.open("w") as file:
        for t in range(N):
            for name, series_prices in prices.items():
                version = "naive" if t < FIRST_MODEL else "m1"
                ts = f"2026-01-05T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}.000Z"
                record = {
                    "series": name,
                    "ts": ts,
                    "price": float(series_prices[t]),
                    "forecast": float(forecasts[name][t]),
                    "model_version": version,
                }
                file.write(json.dumps(record) + "\n")


def evaluation_of(
    tmp_path: Path, lstm: dict[str, np.ndarray], prices: dict[str, np.ndarray]
) -> Evaluation:
    """LSTM as given, GRU always the last price (never worse than naive)."""
    write_replay(tmp_path / "lstm.jsonl", prices, lstm)
    write_replay(tmp_path / "gru.jsonl", prices, prices)
    return evaluate(load_points({"lstm": tmp_path / "lstm.jsonl", "gru": tmp_path / "gru.jsonl"}))


def random_walks(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: start * np.exp(np.cumsum(rng.normal(0, 0.001, N)))
            for name, start in ((NOISY, 100.0), ("B", 5.0))}  # fmt: skip


def test_a_model_significantly_worse_than_naive_is_flagged_in_a_sentence_and_the_tables(
    tmp_path: Path,
) -> None:
    prices = random_walks(1)
    noise = np.random.default_rng(2).normal(0, 0.05, N)
    lstm = {NOISY: prices[NOISY] + noise, "B": prices["B"]}
    document = write_report(evaluation_of(tmp_path, lstm, prices), tmp_path / "report", {})

    flags = {(flag["scope"], flag["name"], flag["row"]) for flag in document["worse_than_naive"]}
    assert ("series", NOISY, "lstm") in flags
    assert not {flag for flag in flags if flag[1] == "B" or flag[2] == "gru"}
    assert document["series"][NOISY]["lstm"]["worse_than_naive"] is True
    assert document["series"]["B"]["lstm"]["worse_than_naive"] is False
    page = (tmp_path / "report" / HTML_FILE).read_text()
    assert "<p class='alarm'>" in page and "<b>LSTM</b> on series <b>A</b>" in page
    assert "<b>GRU</b> on" not in page
    series_a = page[page.index("<h3>Series A") : page.index("<h3>Series B")]
    assert series_a.count("<tr class=worse>") == 1
    assert "<tr class=worse>" not in page[page.index("<h3>Series B") :]


def test_without_a_worse_model_the_report_says_so(tmp_path: Path) -> None:
    prices = random_walks(3)
    document = write_report(evaluation_of(tmp_path, prices, prices), tmp_path / "report", {})
    page = (tmp_path / "report" / HTML_FILE).read_text()
    assert document["worse_than_naive"] == []
    assert "<p class='fine'>No model is significantly worse than naive" in page
    assert "<p class='alarm'>" not in page
    for model in ("LSTM", "GRU"):
        assert f"</span>{model} <b>&#9888;" not in page


def test_every_figure_is_explained_in_one_line(tmp_path: Path) -> None:
    prices = random_walks(4)
    write_report(evaluation_of(tmp_path, prices, prices), tmp_path / "report", {})
    page = (tmp_path / "report" / HTML_FILE).read_text()
    assert set(METRICS) == set(COLUMNS)
    for column, text in METRICS.items():
        assert f"<dt>{column}</dt><dd>" in page and "\n" not in text


def test_every_row_has_its_own_look_and_the_models_are_drawn_on_top() -> None:
    looks = [(style.color, style.linestyle) for style in STYLES.values()]
    assert len(set(looks)) == len(looks)
    assert len({style.color for style in STYLES.values()}) == len(STYLES)
    assert STYLES["lstm"].marker != STYLES["gru"].marker
    assert STYLES["lstm"].linewidth > STYLES["gru"].linewidth and STYLES["lstm"].alpha < 1
    below = max(STYLES[row].zorder for row in ("actual", "naive", "oracle"))
    assert min(STYLES["lstm"].zorder, STYLES["gru"].zorder) > below


def test_the_zoomed_window_is_where_the_forecasts_differ(tmp_path: Path) -> None:
    prices = random_walks(5)
    lstm = {name: values.copy() for name, values in prices.items()}
    lstm[NOISY][400 : 400 + ZOOM_TICKS] *= 1.002
    evaluation = evaluation_of(tmp_path, lstm, prices)
    rows = evaluation.points.by_series()[NOISY]
    window = _busiest_window(evaluation, rows[evaluation.scored[rows]], ZOOM_TICKS)
    shown = set(evaluation.points.position[window].tolist())
    assert len(shown & set(range(400, 400 + ZOOM_TICKS))) >= 0.9 * ZOOM_TICKS


def test_directional_figures_separate_calling_from_calling_right(tmp_path: Path) -> None:
    """Calling every other move, always right: accuracy 0.5, calls 0.5, hit rate 1."""
    prices = random_walks(6)
    lstm = {name: values.copy() for name, values in prices.items()}
    for name, values in prices.items():
        step = np.diff(values, append=values[-1])
        lstm[name] = values + np.where(np.arange(N) % 2 == 0, step / 2, 0.0)
    scores = evaluation_of(tmp_path, lstm, prices).per_series["B"]
    assert scores["lstm"].calls == pytest.approx(0.5, abs=0.01)
    assert scores["lstm"].directional_accuracy == pytest.approx(0.5, abs=0.01)
    assert scores["lstm"].call_hit_rate == 1.0
    assert scores["naive"].calls == scores["naive"].directional_accuracy == 0.0


def test_the_interval_figures_are_in_the_metrics_and_the_page(tmp_path: Path) -> None:
    """LSTM's own intervals (the records') are far too narrow: its coverage at the service's
    level is marked in the page, and only where the metrics say it is off by over a point."""
    prices = random_walks(7)
    evaluation_of(tmp_path, prices, prices)
    records = [json.loads(line) for line in (tmp_path / "lstm.jsonl").read_text().splitlines()]
    narrow = [{**r, "lower": r["forecast"] * 0.9999, "upper": r["forecast"] * 1.0001}
              for r in records]  # fmt: skip
    (tmp_path / "lstm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in narrow))
    points = load_points({"lstm": tmp_path / "lstm.jsonl", "gru": tmp_path / "gru.jsonl"})
    document = write_report(evaluate(points), tmp_path / "report", {})

    intervals = document["intervals"]
    assert intervals["coverage"] == Settings.interval_coverage
    assert intervals["rows"] == ["lstm", "gru", *INTERVAL_BASELINES]
    assert intervals["levels"] == sorted({*LEVELS, Settings.interval_coverage})
    own = intervals["kinds"]["all"][level_key(Settings.interval_coverage)]
    assert set(own["lstm"]) == {field.name for field in fields(IntervalScores)}
    assert own["lstm"]["coverage"] < 0.2 and abs(own["gru"]["coverage"] - 0.9) < 0.05
    off = [
        (level, row)
        for level, scores in intervals["kinds"]["all"].items()
        for row, figures in scores.items()
        if abs(figures["coverage"] - float(level)) > 0.01
    ]
    assert (level_key(Settings.interval_coverage), "lstm") in off
    page = (tmp_path / "report" / HTML_FILE).read_text()
    section = page[page.index("<section id='intervals'>") : page.index("<section id='plots'>")]
    assert section.count("<td class=off>") == len(off)
    assert section.count("<h3>All series") == 1
    for file in INTERVAL_PLOTS:
        assert f"alt='{file}'" in section
        assert (tmp_path / "report" / file).read_bytes()[:4] == b"\x89PNG"


def test_every_trigger_and_rejection_of_the_replay_is_in_the_metrics_and_on_the_rolling_plot(
    tmp_path: Path,
) -> None:
    prices = random_walks(5)
    evaluation = evaluation_of(tmp_path, prices, prices)
    second = 1_000_000_000
    start = rfc3339_ns(min(evaluation.points.ts))
    lstm = [RetrainEvent(start + 100 * second, "trigger", "decay"),
            RetrainEvent(start + 100 * second, "run", "rejected", "m2"),
            RetrainEvent(start + 200 * second, "trigger", "decay"),
            RetrainEvent(start + 200 * second, "run", "shadowed", "m3"),
            RetrainEvent(start + 300 * second, "shadow", "rejected", "m3")]  # fmt: skip
    gru = [RetrainEvent(start + 400 * second, "trigger", "manual")]
    events = {"lstm": lstm, "gru": gru}
    document = write_report(evaluation, tmp_path / "report", {}, events=events)
    assert document["retrain_events"]["lstm"][4] == {
        "ts": "2026-01-05T00:05:00.000Z", "kind": "shadow", "what": "rejected", "version": "m3"
    }  # fmt: skip
    figure = rolling_mae_figure(evaluation, events)
    marks = {
        line.get_label(): list(np.asarray(line.get_xdata())) for line in figure.axes[0].get_lines()
    }
    hours = [100 / 3600, 200 / 3600, 300 / 3600, 400 / 3600]
    assert marks["LSTM retrain triggered: decay"] == pytest.approx(hours[:2])
    assert marks["LSTM candidate rejected"] == pytest.approx([hours[0], hours[2]])
    assert marks["GRU retrain triggered: manual"] == pytest.approx(hours[3:])
    assert "GRU candidate rejected" not in marks and "LSTM retrained" in marks  # m1 took over


def test_every_retrain_trigger_has_a_marker_no_row_uses() -> None:
    assert set(TRIGGER_MARKERS) == set(RETRAIN_TRIGGERS)
    row_markers = {look.marker for look in (*STYLES.values(), OTHER)}
    assert not row_markers & {*TRIGGER_MARKERS.values(), "x"}
    assert len(set(TRIGGER_MARKERS.values())) == len(TRIGGER_MARKERS)
