"""`forecaster backtest` end to end: real replays with a tiny model trained inline (TensorFlow)."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster import synthetic
from forecaster.backtest.evaluate import MIN_TUNE
from forecaster.backtest.report import HTML_FILE, METRICS_FILE, PLOTS
from forecaster.backtest.run import backtest, forecasts_file
from forecaster.config import Settings
from forecaster.engine import NAIVE

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
SAMPLE_TICKS = 6_000  # the first 500 ticks of each of the 12 sample series
TINY = Settings(units=4, layers=1, train_epochs=8, train_window=32, bootstrap_steps=2400,
                max_batch=1000, metrics_port=0)  # fmt: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backtest of the head of the sample data (LSTM), with the generator's oracle."""
    data = tmp_path_factory.mktemp("sample")
    for name in ("ticks.csv", "oracle.csv"):  # oracle.csv is row-aligned with ticks.csv
        lines = (SAMPLE / name).read_text().splitlines(keepends=True)[: SAMPLE_TICKS + 1]
        (data / name).write_text("".join(lines))
    report = data / "report"
    backtest(TINY, data / "ticks.csv", report, cells=("lstm",), progress=None)
    return report


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


def test_the_report_files_are_written(sample_report: Path) -> None:
    for name in (METRICS_FILE, HTML_FILE, *PLOTS, "forecasts-lstm.jsonl"):
        assert (sample_report / name).stat().st_size > 0, name
    for name in PLOTS:
        assert (sample_report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (sample_report / HTML_FILE).read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert "RW-BTC" in page and "holt" in page


def test_metrics_agree_with_a_recomputation_from_the_forecast_file(sample_report: Path) -> None:
    cell = "lstm"
    metrics = json.loads((sample_report / METRICS_FILE).read_text())
    frame = scored_frame(sample_report, cell, sample_report.parent / "oracle.csv")
    assert metrics["scored_points"] == len(frame) > 2500
    for series, rows in frame.groupby("series"):
        scores = metrics["series"][series]
        error = rows["forecast"] - rows["actual"]
        naive_mae = (rows["price"] - rows["actual"]).abs().mean()
        assert scores[cell]["points"] == len(rows)
        assert scores[cell]["mae"] == pytest.approx(error.abs().mean(), rel=1e-9)
        assert scores[cell]["rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-9)
        assert scores[cell]["mase"] == pytest.approx(error.abs().mean() / naive_mae, rel=1e-9)
        # The naive and oracle rows are exact: the same figures from the files alone.
        assert scores["naive"]["mae"] == pytest.approx(naive_mae, rel=1e-12)
        assert scores["naive"]["mase"] == 1.0
        oracle_mae = (rows["oracle"] - rows["actual"]).abs().mean()
        assert scores["oracle"]["mae"] == pytest.approx(oracle_mae, rel=1e-12)
    relative = (frame["forecast"] - frame["actual"]).abs() / frame["price"]
    naive_relative = (frame["price"] - frame["actual"]).abs() / frame["price"]
    overall = metrics["kinds"]["all"][cell]
    assert overall["mase"] == pytest.approx(relative.mean() / naive_relative.mean(), rel=1e-9)
    assert metrics["retrains"][cell][0]["version"].startswith(cell)


@pytest.fixture(scope="module")
def generated_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Ten random walks and ten AR(1) series with phi = 0.5, backtested together (GRU)."""
    data = tmp_path_factory.mktemp("generated")
    specs = synthetic.SERIES_SETS["random_walk"] + synthetic.SERIES_SETS["ar1"]
    ticks = synthetic.generate(specs, ticks_per_series=600, seed=5)
    synthetic.write_ticks_csv(ticks, data / "ticks.csv")
    synthetic.write_oracle_csv(ticks, data / "oracle.csv")
    settings = replace(TINY, bootstrap_steps=4000)
    return backtest(settings, data / "ticks.csv", data / "report", cells=("gru",), progress=None)


def test_random_walks_are_forecast_no_worse_than_naive(generated_sets: dict[str, Any]) -> None:
    kinds = generated_sets["kinds"]
    assert 0.99 <= kinds["random_walk"]["gru"]["mase"] <= 1.01
    assert kinds["random_walk"]["oracle"]["mase"] == 1.0


def test_autocorrelated_returns_are_captured(generated_sets: dict[str, Any]) -> None:
    ar1 = generated_sets["kinds"]["ar1"]
    assert ar1["gru"]["mase"] <= 0.90
    assert ar1["gru"]["dm_stat"] < -1.96
