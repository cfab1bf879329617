"""`forecaster backtest` end to end: real replays with a tiny model trained inline (TensorFlow)."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.config import Settings
from forecaster.core.engine import NAIVE
from forecaster.evaluation import synthetic
from forecaster.evaluation.backtest.evaluate import MIN_TUNE, retrain_points
from forecaster.evaluation.backtest.interval_plots import INTERVAL_PLOTS
from forecaster.evaluation.backtest.page import SECTIONS
from forecaster.evaluation.backtest.plots import PLOTS
from forecaster.evaluation.backtest.points import load_points
from forecaster.evaluation.backtest.report import HTML_FILE, METRICS_FILE
from forecaster.evaluation.backtest.run import backtest, events_file, forecasts_file
from forecaster.evaluation.backtest.service_intervals import service_bounds
from forecaster.params import interval_params
from forecaster.retraining.events import read_events
from forecaster.timestamps import rfc3339_ns
from tests.support.browser import (  # noqa: F401 (browser_fixture: the browser fixture)
    Browser,
    browser_fixture,
)

TINY = Settings(units=4, layers=1, train_epochs=8, train_window=32, bootstrap_steps=4000,
                max_batch=1000, metrics_port=0, interval_coverage=0.8)  # fmt: skip
CELL = "gru"
ALL_PLOTS = {**PLOTS, **INTERVAL_PLOTS}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten random walks and ten AR(1) series with phi = 0.5, at price levels from 0.07 to
    4000, backtested together (GRU) with the generator's oracle, intervals at 80% (not the
    default, so that the settings are seen to reach the scores): one backtest (one fit)
    serves every test here."""
    data = tmp_path_factory.mktemp("generated")
    specs = synthetic.SERIES_SETS["random_walk"] + synthetic.SERIES_SETS["ar1"]
    ticks = synthetic.generate(specs, ticks_per_series=600, seed=5)
    synthetic.write_ticks_csv(ticks, data / "ticks.csv")
    synthetic.write_oracle_csv(ticks, data / "oracle.csv")
    backtest(TINY, data / "ticks.csv", data / "report", cells=(CELL,), progress=None)
    return data / "report"


def metrics_of(report: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((report / METRICS_FILE).read_text())
    return loaded


def scored_frame(report: Path, cell: str, oracle: Path) -> pd.DataFrame:
    """The scored points recomputed straight from a forecast file, with pandas."""
    frame = pd.read_json(forecasts_file(report, cell), lines=True, dtype={"ts": str})
    frame["position"] = frame.groupby("series").cumcount()
    frame["actual"] = frame.groupby("series")["price"].shift(-1)
    made = frame["model_version"] != NAIVE
    first_made = frame["position"].where(made).groupby(frame["series"]).transform("min")
    frame = frame[made & frame["actual"].notna()
                  & (frame["position"] >= first_made.clip(lower=MIN_TUNE))]  # fmt: skip
    truth = pd.read_csv(oracle, dtype={"ts": str})
    return frame.merge(truth, on=["series", "ts"], how="left", validate="one_to_one")


def test_the_report_files_are_written(report: Path) -> None:
    for name in (METRICS_FILE, HTML_FILE, *ALL_PLOTS, f"forecasts-{CELL}.jsonl"):
        assert (report / name).stat().st_size > 0, name
    for name in ALL_PLOTS:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / HTML_FILE).read_text()
    assert page.count("data:image/png;base64,") == len(ALL_PLOTS)
    assert "RW-00" in page and "AR-09" in page and "holt" in page


def test_metrics_agree_with_a_recomputation_from_the_forecast_file(report: Path) -> None:
    metrics = metrics_of(report)
    frame = scored_frame(report, CELL, report.parent / "oracle.csv")
    assert metrics["scored_points"] == len(frame) > 2500
    for series, rows in frame.groupby("series"):
        scores = metrics["series"][series]
        error = rows["forecast"] - rows["actual"]
        naive_mae = (rows["price"] - rows["actual"]).abs().mean()
        assert scores[CELL]["points"] == len(rows)
        assert scores[CELL]["mae"] == pytest.approx(error.abs().mean(), rel=1e-9)
        assert scores[CELL]["rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-9)
        assert scores[CELL]["mase"] == pytest.approx(error.abs().mean() / naive_mae, rel=1e-9)
        # The naive and oracle rows are exact: the same figures from the files alone.
        assert scores["naive"]["mae"] == pytest.approx(naive_mae, rel=1e-12)
        assert scores["naive"]["mase"] == 1.0
        oracle_mae = (rows["oracle"] - rows["actual"]).abs().mean()
        assert scores["oracle"]["mae"] == pytest.approx(oracle_mae, rel=1e-12)
    relative = (frame["forecast"] - frame["actual"]).abs() / frame["price"]
    naive_relative = (frame["price"] - frame["actual"]).abs() / frame["price"]
    overall = metrics["kinds"]["all"][CELL]
    assert overall["mase"] == pytest.approx(relative.mean() / naive_relative.mean(), rel=1e-9)
    assert metrics["retrains"][CELL][0]["version"].startswith(CELL)


def test_the_replay_retraining_events_are_kept_beside_its_forecasts(report: Path) -> None:
    """The first model's trigger and promotion, at the tick time of its first forecasts."""
    with events_file(report, CELL).open() as file:
        events = read_events(file)
    first = metrics_of(report)["retrains"][CELL][0]
    assert [(e.kind, e.what, e.version) for e in events] == [
        ("trigger", "bootstrap", ""), ("run", "promoted", first["version"])
    ]  # fmt: skip
    assert metrics_of(report)["retrain_events"][CELL] == [e.to_dict() for e in events]
    assert events[0].ts == events[1].ts < rfc3339_ns(first["ts"])


def test_random_walks_are_forecast_no_worse_than_naive(report: Path) -> None:
    kinds = metrics_of(report)["kinds"]
    assert 0.99 <= kinds["random_walk"][CELL]["mase"] <= 1.01
    assert kinds["random_walk"]["oracle"]["mase"] == 1.0


def test_autocorrelated_returns_are_captured(report: Path) -> None:
    ar1 = metrics_of(report)["kinds"]["ar1"]
    assert ar1[CELL]["mase"] <= 0.90
    assert ar1[CELL]["dm_stat"] < -1.96


def test_the_offline_calibration_gives_back_the_replays_own_intervals(report: Path) -> None:
    """The backtest's intervals at other coverages are the service's: the same calibration
    run over the replay's forecasts (model swaps included) reproduces the ones it emitted."""
    points = load_points({CELL: forecasts_file(report, CELL)})
    new_models = retrain_points(points.versions[CELL])
    assert len(new_models) >= 1
    params = interval_params(TINY)
    lower, upper = service_bounds(points, CELL, new_models, params, (params.coverage,))
    emitted_lower, emitted_upper = points.bounds[CELL]
    np.testing.assert_allclose(lower[0], emitted_lower, rtol=1e-9, atol=0)
    np.testing.assert_allclose(upper[0], emitted_upper, rtol=1e-9, atol=0)


def test_interval_figures_agree_with_a_recomputation_from_the_forecast_file(report: Path) -> None:
    metrics = metrics_of(report)
    frame = scored_frame(report, CELL, report.parent / "oracle.csv")
    intervals = metrics["intervals"]
    assert intervals["coverage"] == TINY.interval_coverage
    own = f"{TINY.interval_coverage:g}"
    for kind, rows in [("all", frame), *frame.groupby("kind")]:
        scores = intervals["kinds"][kind][own][CELL]
        inside = (rows["lower"] <= rows["actual"]) & (rows["actual"] <= rows["upper"])
        assert scores["points"] == len(rows)
        assert scores["coverage"] == pytest.approx(inside.mean(), abs=1e-12)
        width = (rows["upper"] - rows["lower"]) / rows["price"]
        assert scores["width"] == pytest.approx(width.mean(), rel=1e-9)
    for level in intervals["levels"]:
        coverage = intervals["kinds"]["all"][f"{level:g}"][CELL]["coverage"]
        assert coverage == pytest.approx(level, abs=0.03)


def test_the_report_renders_in_a_browser_with_every_section_and_plot(
    report: Path, browser: Browser, tmp_path: Path
) -> None:
    page = report / HTML_FILE
    dom = browser.dom(page)
    for anchor, title in SECTIONS.items():
        assert f'<section id="{anchor}"><h2>{title}</h2>' in dom, anchor
    metrics = metrics_of(report)
    for kind in metrics["kinds"]:
        assert ("<h3>All series" if kind == "all" else f"<h3>Kind: {kind} ") in dom
    for series in metrics["series"]:
        assert f"<h3>Series {series} " in dom
    start = dom.index('<section id="intervals">')
    intervals = dom[start : dom.index("</section>", start)]
    for kind in metrics["intervals"]["kinds"]:
        assert ("<h3>All series" if kind == "all" else f"<h3>Kind: {kind} ") in intervals
    assert intervals.count('<table class="intervals">') == len(metrics["intervals"]["kinds"])
    images = browser.images(page, tmp_path)
    assert sorted(image.alt for image in images) == sorted(ALL_PLOTS)
    assert all(image.natural_width > 0 for image in images), images


def test_the_browser_check_sees_a_plot_that_does_not_load(
    report: Path, browser: Browser, tmp_path: Path
) -> None:
    text = (report / HTML_FILE).read_text()
    start = text.index("base64,") + len("base64,")
    (tmp_path / "broken.html").write_text(text[:start] + "AAAA" + text[start + 64 :])
    widths = [image.natural_width for image in browser.images(tmp_path / "broken.html", tmp_path)]
    assert widths[0] == 0 and all(width > 0 for width in widths[1:])
