"""The command line: complete help without TensorFlow, and clear errors."""

import subprocess
import sys

import pytest

from forecaster.cli import main


def forecaster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "forecaster", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ([], ["run", "replay", "train"]),
        (["run"], ["--model-dir", "--metrics-port", "--config", "--input", "--rate"]),
        (["replay"], ["INPUT.csv", "--out", "--rejects", "--model-dir"]),
        (["train"], ["INPUT.csv", "--model-dir", "--cell", "--layers", "--units", "--epochs"]),
    ],
)
def test_help_is_complete_and_does_not_import_tensorflow(
    command: list[str], flags: list[str]
) -> None:
    result = forecaster(*command, "--help")
    assert result.returncode == 0
    for flag in flags:
        assert flag in result.stdout
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert "tensorflow" not in imported and "keras" not in imported


def test_bad_setting_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "missing.csv", "--out", "x.jsonl", "--config", "nope.toml"]) == 1
    assert "cannot read config file nope.toml" in capsys.readouterr().err


def test_missing_input_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "missing.csv", "--out", "x.jsonl"]) == 1
    assert "cannot read tick file missing.csv" in capsys.readouterr().err
