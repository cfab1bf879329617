"""Training end to end: features of a tick file -> Keras fit -> registry -> served forecasts."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster import cli
from forecaster.config import Settings
from forecaster.core.engine import NAIVE, Engine
from forecaster.io.files import CsvSource
from forecaster.model.spec import ModelSpec
from forecaster.params import engine_params
from forecaster.retraining.dataset import Sequence
from forecaster.retraining.registry import MODEL_FILE, Registry
from forecaster.retraining.trainer import TrainedModel, Trainer
from forecaster.service import replay, train
from tests.support.models import random_stepper
from tests.support.paths import SAMPLE_TICKS

SAMPLE = SAMPLE_TICKS
SMALL = {"units": 8, "layers": 2, "train_epochs": 1, "train_window": 32, "max_batch": 1000}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 4,000 sample ticks (~330 per series)."""
    path = tmp_path_factory.mktemp("history") / "history.csv"
    pd.read_csv(SAMPLE, dtype=str, nrows=4000).to_csv(path, index=False)
    return path


def read_forecasts(path: Path) -> pd.DataFrame:
    # json.loads parses floats exactly; pandas' read_json may be off in the last bit.
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


def engine_forecasts(engine: Engine, path: Path) -> np.ndarray:
    source = CsvSource(path, max_batch=1000)
    out = []
    while (batch := source.poll(0.0)) is not None:
        out.append(engine.process(batch.parse().ticks).forecasts.forecast)
    return np.concatenate(out)


def test_train_save_load_round_trip_gives_identical_forecasts(
    history: Path, tmp_path: Path
) -> None:
    settings = Settings(model_dir=str(tmp_path), **SMALL)  # type: ignore[arg-type]
    trained = train(settings, history, verbose=0)
    registry = Registry(tmp_path)
    assert registry.promoted() == trained.stepper.version
    assert trained.details["training"]["stopping_loss"] > 0
    keras_file = registry.version_dir(trained.stepper.version) / MODEL_FILE
    assert keras_file.stat().st_size > 0  # the full artifact, next to the serving weights

    in_memory = engine_forecasts(Engine(engine_params(settings), trained.stepper), history)
    replay(settings, history, tmp_path / "f.jsonl", str(tmp_path / "r.jsonl"))
    served = read_forecasts(tmp_path / "f.jsonl")
    assert set(served["model_version"]) == {NAIVE, trained.stepper.version}
    np.testing.assert_array_equal(served["forecast"].to_numpy(), in_memory)


def test_train_into_a_model_dir_that_cannot_be_written_is_one_error_line(
    history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def fit(self: Trainer, sequences: list[Sequence], verbose: int = 0) -> TrainedModel:
        return TrainedModel(random_stepper(ModelSpec(cell="gru", layers=1, units=4)), {})

    monkeypatch.setattr(Trainer, "fit", fit)  # the registry is under test, not Keras
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert cli.main(["train", str(history), "--model-dir", str(blocker / "models")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("forecaster: error: cannot save model version gru-")
    assert line.endswith(": Not a directory")
