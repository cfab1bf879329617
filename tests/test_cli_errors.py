"""Every mistake a user can make with a command's arguments or files is one line on stderr,
`forecaster: error: ...`, and exit 2 (the command line itself is wrong) or 1 (anything
that failed at run time); a closed stdout ends the process quietly with 141.

Each command runs in a subprocess (`python -m forecaster`), all of them at once; none of
these mistakes gets as far as importing TensorFlow, training or serving.
"""

import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.paths import SAMPLE_TICKS

SAMPLE = SAMPLE_TICKS
USAGE, FAILED, BROKEN_PIPE = 2, 1, 141
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: refused at once
ROOT = os.geteuid() == 0  # root reads and writes whatever the file modes say


@dataclass(frozen=True)
class Mistake:
    args: tuple[str, ...]
    code: int
    says: str  # a part of the error line
    env: Mapping[str, str] = field(default_factory=dict)
    as_root: bool = True  # False: the mistake is none for root (file modes)


def usage(*args: str, says: str) -> Mistake:
    return Mistake(args, USAGE, says)


def failure(*args: str, says: str, env: Mapping[str, str] | None = None) -> Mistake:
    return Mistake(args, FAILED, says, env or {})


MISTAKES = {
    # the command line itself
    "no command": usage(says="name a command: run, replay, train"),
    "unknown command": usage("frobnicate", says="invalid choice: 'frobnicate'"),
    "unknown top-level flag": usage("--frobnicate", says="unrecognized arguments: --frobnicate"),
    "unknown flag after a command": usage(
        "train", "ticks.csv", "--bogus", says="--bogus (see forecaster train --help)"
    ),
    "unknown flag after an action": usage(
        "models", "list", "--bogus", says="(see forecaster models list --help)"
    ),
    "models without an action": usage("models", says="required: ACTION"),
    "unknown models action": usage("models", "frobnicate", says="invalid choice"),
    "replay without --out": usage("replay", "ticks.csv", says="required: --out"),
    "replay without input": usage("replay", "--out", "f.jsonl", says="required: INPUT.csv"),
    "backtest without --report": usage("backtest", "ticks.csv", says="required: --report"),
    "promote without VERSION": usage(
        "models", "promote", "--model-dir", "models", says="required: VERSION"
    ),
    "train without --model-dir": usage(
        "train", "ticks.csv", says="--model-dir is required (or FORECASTER_MODEL_DIR"
    ),
    "models without --model-dir": usage("models", "list", says="--model-dir is required"),
    "produce without brokers": usage("produce", "ticks.csv", says="needs --bootstrap-servers"),
    # wrong flag values
    "run --rate -1": usage("run", "--rate", "-1", says="argument --rate: must be a number >= 0"),
    "run --rate nan": usage("run", "--rate", "nan", says="argument --rate"),
    "run --metrics-port 99999": usage(
        "run", "--metrics-port", "99999", says="argument --metrics-port: metrics_port must be"
    ),
    "run --metrics-port abc": usage("run", "--metrics-port", "abc", says="invalid int value"),
    "train --epochs 0": usage(
        "train",
        "ticks.csv",
        "--model-dir",
        "models",
        "--epochs",
        "0",
        says="argument --epochs: must be a whole number >= 1",
    ),
    "train --layers 0": usage(
        "train",
        "ticks.csv",
        "--model-dir",
        "models",
        "--layers",
        "0",
        says="argument --layers: layers must be",
    ),
    "train --units 1e9": usage(
        "train",
        "ticks.csv",
        "--model-dir",
        "models",
        "--units",
        "1e9",
        says="argument --units: invalid int value",
    ),
    "train --cell rnn": usage(
        "train",
        "ticks.csv",
        "--model-dir",
        "models",
        "--cell",
        "rnn",
        says="argument --cell: invalid choice: 'rnn'",
    ),
    "backtest --cell rnn": usage(
        "backtest", "ticks.csv", "--report", "r", "--cell", "rnn", says="invalid choice"
    ),
    "produce --rate -5": usage(
        "produce",
        "ticks.csv",
        "--bootstrap-servers",
        UNREACHABLE,
        "--rate",
        "-5",
        says="argument --rate",
    ),
    "retrain --url file:": usage(
        "retrain", "--url", "file:///etc/passwd", says="--url must be http:// or https://"
    ),
    # settings that are wrong where no flag is
    "missing config file": failure(
        "run", "--config", "nope.toml", says="cannot read config file nope.toml"
    ),
    "config file that is no TOML": failure(
        "run", "--config", "garbage.bin", says="cannot read config file"
    ),
    "environment value": failure(
        "run", says="rate must be a float, got 'abc'", env={"FORECASTER_RATE": "abc"}
    ),
    # input files: missing, a directory, empty, not text, not a tick CSV
    **{
        f"{args[0]} of {name}": failure(*(arg.format(name) for arg in args), says=name)
        for args in [
            ("replay", "{}", "--out", "f.jsonl"),
            ("train", "{}", "--model-dir", "models"),
            ("backtest", "{}", "--report", "report-{}"),
            ("produce", "{}", "--bootstrap-servers", UNREACHABLE),
            ("run", "--input", "{}"),
        ]
        for name in ("missing.csv", "folder", "empty.csv", "garbage.bin", "columns.csv")
    },
    "unreadable input": Mistake(
        ("replay", "secret.csv", "--out", "f.jsonl"),
        FAILED,
        "cannot read tick file secret.csv",
        as_root=False,
    ),
    "missing oracle": failure(
        "backtest",
        "ticks.csv",
        "--report",
        "r",
        "--oracle",
        "nope.csv",
        says="cannot read oracle file nope.csv",
    ),
    # outputs
    "--out in a missing directory": failure(
        "replay", "ticks.csv", "--out", "nowhere/f.jsonl", says="nowhere does not exist"
    ),
    "--out under a file": failure(
        "replay", "ticks.csv", "--out", "file/f.jsonl", says="file is not a directory"
    ),
    "--out a directory": failure(
        "replay", "ticks.csv", "--out", "folder", says="--out folder is a directory"
    ),
    "--rejects in a missing directory": failure(
        "replay",
        "ticks.csv",
        "--out",
        "f.jsonl",
        "--rejects",
        "nowhere/r.jsonl",
        says="--rejects nowhere/r.jsonl: nowhere does not exist",
    ),
    "--out in a read-only directory": Mistake(
        ("replay", "ticks.csv", "--out", "locked/f.jsonl"),
        FAILED,
        "cannot write in locked",
        as_root=False,
    ),
    "run --forecasts-out in a missing directory": failure(
        "run", "--forecasts-out", "nowhere/f.jsonl", says="forecasts file nowhere/f.jsonl"
    ),
    "--report under a file": failure(
        "backtest", "ticks.csv", "--report", "file/r", says="file is not a directory"
    ),
    "--report a file": failure(
        "backtest", "ticks.csv", "--report", "file", says="report directory file is not a"
    ),
    "--report in a missing directory": failure(
        "backtest", "ticks.csv", "--report", "nowhere/r", says="nowhere does not exist"
    ),
    # model directories
    "models list of a missing dir": failure(
        "models", "list", "--model-dir", "typo", says="model directory typo does not exist"
    ),
    "models rollback of a file": failure(
        "models", "rollback", "--model-dir", "file", says="model directory file is not a"
    ),
    # the registry refuses a name that is no version name (a path): see test_registry.py
    "promote ../etc": failure(
        "models",
        "promote",
        "../etc",
        "--model-dir",
        "models",
        says="'../etc' is not a model version name",
    ),
    "promote a missing version": failure(
        "models", "promote", "lstm-000000000000", "--model-dir", "models", says="cannot read"
    ),
    "rollback with nothing to roll back to": failure(
        "models", "rollback", "--model-dir", "models", says="no earlier promoted version"
    ),
    "train into a file": failure(
        "train", "ticks.csv", "--model-dir", "file", says="model directory file is not a"
    ),
    "replay with a file for model dir": failure(
        "replay", "ticks.csv", "--out", "f.jsonl", "--model-dir", "file", says="is not a dir"
    ),
    # what is not there
    "produce to no broker": failure(
        "produce",
        "ticks.csv",
        "--bootstrap-servers",
        UNREACHABLE,
        says=f"cannot reach Kafka at {UNREACHABLE}",
    ),
    "retrain of no service": failure(
        "retrain", "--url", "http://127.0.0.1:1", says="cannot reach http://127.0.0.1:1"
    ),
    # the work fails on the input: no report folder is left behind (checked below)
    "backtest with nothing to score": failure(
        "backtest",
        "ticks.csv",
        "--report",
        "short-report",
        says="nothing to score in ticks.csv",
        env={"FORECASTER_LOG_LEVEL": "WARNING"},  # the replay's own INFO lines are no error
    ),
}


def files(folder: Path) -> Path:
    """Small inputs of every kind a mistake needs, in ``folder``."""
    with SAMPLE.open() as sample:
        (folder / "ticks.csv").write_text("".join(next(sample) for _ in range(200)))
    (folder / "secret.csv").write_text((folder / "ticks.csv").read_text())
    (folder / "secret.csv").chmod(0)
    (folder / "empty.csv").write_text("")
    (folder / "garbage.bin").write_bytes(b"\x00\xff\xfe garbage \x01\x02\n" * 10)
    (folder / "columns.csv").write_text("a,b\n1,2\n")
    (folder / "file").write_text("not a directory\n")
    (folder / "folder").mkdir()
    (folder / "models").mkdir()
    (folder / "locked").mkdir(mode=0o500)
    return folder


def forecaster(
    folder: Path, args: tuple[str, ...], env: Mapping[str, str] = {}
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    return subprocess.run(
        [sys.executable, "-m", "forecaster", *args],
        cwd=folder,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Answers:
    folder: Path
    before: list[str]  # what was in the folder before any command ran
    by_mistake: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Answers:
    folder = files(tmp_path_factory.mktemp("mistakes"))
    before = listing(folder)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(forecaster, folder, mistake.args, mistake.env)
            for name, mistake in MISTAKES.items()
            if mistake.as_root or not ROOT
        }
        return Answers(folder, before, {name: f.result() for name, f in futures.items()})


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_is_one_error_line_and_its_exit_code(name: str, answers: Answers) -> None:
    mistake = MISTAKES[name]
    if ROOT and not mistake.as_root:
        pytest.skip("root reads and writes whatever the file modes say")
    answer = answers.by_mistake[name]
    assert "Traceback" not in answer.stderr
    (line,) = answer.stderr.splitlines()
    assert line.startswith("forecaster: error: ")
    assert mistake.says in line
    assert answer.returncode == mistake.code
    assert answer.stdout == ""


def test_no_mistake_leaves_a_file_or_folder_behind(answers: Answers) -> None:
    """Not the report folder of a failed backtest, not an empty forecasts file, not a
    directory a typo named."""
    assert listing(answers.folder) == answers.before


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("replay", "ticks.csv", "--out", "-"), {}),
        (("run", "--input", "ticks.csv", "--metrics-port", "0"), {}),
    ],
    ids=["replay --out -", "run"],
)
def test_a_closed_stdout_ends_the_command_quietly(
    args: tuple[str, ...], env: dict[str, str], tmp_path: Path
) -> None:
    """`forecaster run | head`: the reader goes away, before the first forecast here."""
    files(tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "forecaster", *args],
        cwd=tmp_path,
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == BROKEN_PIPE
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "Broken pipe" not in err and "error" not in err.lower()
