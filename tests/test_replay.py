"""`forecaster replay` end to end over the sample data plus every kind of malformed row."""

import csv
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_info

from forecaster.config import Settings
from forecaster.core.engine import NAIVE
from forecaster.runtime import BLAS_THREADS
from forecaster.service import replay
from tests.support.paths import SAMPLE_DATA

SAMPLE = SAMPLE_DATA


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole sample file with the malformed rows spliced in at several places."""
    ticks = pd.read_csv(SAMPLE / "ticks.csv", dtype=str, keep_default_na=False)
    bad = pd.read_csv(SAMPLE / "malformed_ticks.csv", dtype=str, keep_default_na=False)
    ticks["expected_reason"] = ""
    third = len(ticks) // 3
    mixed = pd.concat([ticks[:third], bad, ticks[third:]], ignore_index=True)
    path = tmp_path_factory.mktemp("replay") / "mixed.csv"
    mixed.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_gives_one_forecast_per_valid_tick(
    mixed_input: Path, model_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(model_dir=str(model_dir), max_batch=2000)
    totals = replay(settings, mixed_input, tmp_path / "f.jsonl", str(tmp_path / "r.jsonl"))
    rows = pd.read_csv(mixed_input, dtype=str, keep_default_na=False)
    valid = rows[rows["expected_reason"] == ""]
    forecasts = read_jsonl(tmp_path / "f.jsonl")
    rejects = read_jsonl(tmp_path / "r.jsonl")

    assert totals.received == len(rows)
    assert len(forecasts) == len(valid) == totals.accepted
    # Per-series order and content: the forecasts follow each series' valid ticks exactly.
    expected: dict[str, list[float]] = defaultdict(list)
    for series, price in zip(valid["series"], valid["price"], strict=True):
        expected[series].append(float(price))
    seen: dict[str, list[float]] = defaultdict(list)
    for record in forecasts:
        seen[str(record["series"])].append(float(record["price"]))  # type: ignore[arg-type]
    assert seen == expected
    timestamps = defaultdict(list)
    for record in forecasts:
        timestamps[record["series"]].append(pd.Timestamp(str(record["ts"])))
    assert all(ts == sorted(ts) and len(set(ts)) == len(ts) for ts in timestamps.values())

    # Every malformed row is rejected with its reason, from the line it was on.
    reasons = {int(r["source"]["line"]): r["reason"] for r in rejects}  # type: ignore[index]
    bad = rows[rows["expected_reason"] != ""]
    assert reasons == {i + 2: reason for i, reason in bad["expected_reason"].items()}

    # Warm series are forecast by the model; the cold start is naive and says so.
    versions = [r["model_version"] for r in forecasts]
    cold = sum(min(len(prices), settings.min_history) for prices in expected.values())
    assert versions.count(NAIVE) == cold
    assert len(set(versions) - {NAIVE}) == 1
    # An untrained model earns little trust (forecaster.core.skill), but it does move forecasts.
    assert any(r["forecast"] != r["price"] for r in forecasts if r["model_version"] != NAIVE)


def test_a_replay_steps_the_engine_on_one_blas_thread(tmp_path: Path) -> None:
    """Spare BLAS threads would spin beside a training child for the core it needs."""
    settings = Settings(bootstrap_steps=10**9, max_batch=100)  # naive, no TensorFlow
    blas_threads: list[set[int]] = []

    def record(_: object) -> None:
        pools = threadpool_info()
        blas_threads.append({p["num_threads"] for p in pools if p["user_api"] == "blas"})

    replay(settings, SAMPLE / "malformed_ticks.csv", tmp_path / "f.jsonl",
           str(tmp_path / "r.jsonl"), record)  # fmt: skip
    assert blas_threads and all(threads == {BLAS_THREADS} for threads in blas_threads)


def test_a_replay_whose_fits_are_refused_imports_neither_tensorflow_nor_sklearn(
    tmp_path: Path,
) -> None:
    """A first retraining on too little history is refused before TensorFlow starts (4 s,
    600 MB); scikit-learn only scores backtests."""
    ticks = tmp_path / "short.csv"
    rows = [f"S{i % 3},{1_767_571_200_000 + 1000 * i},{100 + (i % 7) / 10}" for i in range(300)]
    ticks.write_text("\n".join(["series,ts,price", *rows]) + "\n")
    script = (
        "import sys; from pathlib import Path; from forecaster.config import Settings; "
        "from forecaster.service import replay; "
        f"replay(Settings(bootstrap_steps=100, max_batch=100), Path({str(ticks)!r}), "
        f"Path({str(tmp_path / 'f.jsonl')!r}), {str(tmp_path / 'r.jsonl')!r}); "
        "print(sorted({'tensorflow', 'keras', 'sklearn'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert "retraining failed (TrainingError: too little history" in run.stderr
    assert run.stdout.strip() == "[]"
