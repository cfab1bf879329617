"""The command line: complete help without TensorFlow, clear errors, and `forecaster
retrain` sending the admin token (never printing it, never following a redirect)."""

import io
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from forecaster.cli import main
from forecaster.config import SAMPLE_TICKS as SAMPLE
from forecaster.config import Settings
from forecaster.core.features import FeatureParams
from forecaster.evaluation.backtest.run import ProgressBar
from forecaster.model.spec import ModelSpec
from forecaster.ops.counting import Totals
from forecaster.ops.http import HttpServer, http_app
from forecaster.ops.metrics import Metrics
from forecaster.retraining.registry import Registry
from forecaster.retraining.trainer import TrainedModel
from tests.support.models import random_stepper


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


TOKEN = "s3cret-admin-token"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@contextmanager
def serving(app: WsgiApp) -> Iterator[str]:
    server = HttpServer(app, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture
def requests() -> list[str]:
    return []


@pytest.fixture
def service(requests: list[str]) -> Iterator[str]:
    """The URL of a service whose POST /retrain takes TOKEN; ``requests`` counts the runs."""

    def retrain() -> str:
        requests.append("retrain")
        return "retraining requested"

    app = http_app(Metrics().registry, lambda: (True, "ok"), retrain, admin_token=TOKEN)
    with serving(app) as url:
        yield url


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORECASTER_ADMIN_TOKEN", raising=False)


def retrain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["retrain", *args])
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


def test_retrain_sends_the_token_of_the_environment_or_the_flag(
    service: str, requests: list[str], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("FORECASTER_ADMIN_TOKEN", TOKEN)
    assert retrain(capsys, "--url", service)[:2] == (0, "retraining requested\n")
    monkeypatch.delenv("FORECASTER_ADMIN_TOKEN")
    assert retrain(capsys, "--url", service + "/", "--token", TOKEN)[0] == 0
    assert requests == ["retrain", "retrain"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--token", "wrong-token"], "refused the admin token (401): check --token or "),
        ([], "needs its admin token (401): pass --token or set FORECASTER_ADMIN_TOKEN"),
    ],
)
def test_retrain_reports_a_wrong_or_missing_token_in_one_line(
    flags: list[str], message: str, service: str, requests: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, out, err = retrain(capsys, "--url", service, *flags)
    assert code == 1 and out == "" and requests == []
    (line,) = err.splitlines()
    assert line.startswith("forecaster: error: the service at http://127.0.0.1:")
    assert message in line and "wrong-token" not in line


def test_retrain_reports_the_endpoint_being_off(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(http_app(Metrics().registry, lambda: (True, ""), lambda: "no")) as url:
        code, _, err = retrain(capsys, "--url", url, "--token", TOKEN)
        assert code == 1
        (line,) = err.splitlines()
        assert "POST /retrain is off at http://127.0.0.1:" in line
        assert "(403): start the service with FORECASTER_ADMIN_TOKEN set" in line


def test_retrain_does_not_follow_a_redirect_with_the_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []

    def elsewhere(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(environ.get("HTTP_AUTHORIZATION", ""))
        start_response("202 Accepted", [])
        return [b"taken"]

    def redirect(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("303 See Other", [("Location", target + "/retrain")])
        return [b""]

    with serving(elsewhere) as target, serving(redirect) as url:
        code, _, err = retrain(capsys, "--url", url, "--token", TOKEN)
    assert code == 1 and "answered 303 See Other" in err
    assert seen == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--url", "file:///etc/passwd"], "--url must be http:// or https://, not file"),
        (["--url", "localhost:9108"], "--url must be http:// or https://"),
        (["--url", "http://[::1"], "--url is no URL"),
        (["--token", "line\nbreak"], "cannot be sent in an HTTP header"),
        (["--token", "tökén"], "cannot be sent in an HTTP header"),
    ],
)
def test_retrain_refuses_what_it_cannot_send(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = retrain(capsys, *flags)
    assert code == 2 and message in err
    assert "line\nbreak" not in err and "tökén" not in err


@pytest.mark.parametrize(
    ("command", "says", "never"),
    [
        (["train"], "required here; or FORECASTER_MODEL_DIR", "in memory only"),
        (["models", "list"], "required here; or FORECASTER_MODEL_DIR", "in memory only"),
        (["run"], "(default: in memory only)", "required"),
        (["retrain"], "(default: http://localhost:9108)", "\0"),
        (["produce"], "Kafka brokers to publish to (required)", "for run"),
    ],
)
def test_help_says_what_each_command_needs(
    command: list[str], says: str, never: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert says in text and never not in text


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (["run"], {"--metrics-port": "metrics_port", "--rate": "rate", "--group-id": "group_id",
                   "--forecasts-out": "forecasts_out", "--dead-letters-out": "dead_letters_out",
                   "--log-level": "log_level", "--kafka-client": "kafka_client"}),
        (["replay"], {"--rejects": "dead_letters_out"}),
        (["train"], {"--cell": "cell", "--layers": "layers", "--units": "units",
                     "--epochs": "train_epochs", "--seed": "seed"}),
    ],
)  # fmt: skip
def test_help_shows_each_flags_default_from_the_settings(
    command: list[str], flags: dict[str, str], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("COLUMNS", "1000")  # a line per flag, no default broken at its hyphen
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    helps = [""]  # each flag with its help, which may start on the next line
    for line in map(str.strip, capsys.readouterr().out.splitlines()):
        if line.startswith("-") or not line:  # a flag's or the end of the last flag's
            helps.append(line)
        elif helps[-1]:
            helps[-1] += " " + line
    for flag, name in flags.items():
        (text,) = (text for text in helps if text.startswith(flag + " "))
        assert text.endswith(f"(default: {getattr(Settings, name)})"), text


@pytest.fixture
def ticks(tmp_path: Path) -> Path:
    path = tmp_path / "ticks.csv"
    with SAMPLE.open() as sample:
        path.write_text("".join(next(sample) for _ in range(50)))
    return path


@pytest.mark.parametrize(("terminal", "verbose"), [(True, 1), (False, 2)])
def test_train_draws_keras_progress_bars_only_on_a_terminal(
    terminal: bool, verbose: int, ticks: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    asked: list[int] = []

    def train(settings: Settings, input_path: Path, verbose: int = 1) -> TrainedModel:
        asked.append(verbose)
        return TrainedModel(random_stepper(ModelSpec(), version="v1"), {})

    monkeypatch.setattr("forecaster.service.train", train)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    assert main(["train", str(ticks), "--model-dir", str(ticks.parent / "models")]) == 0
    assert asked == [verbose] and capsys.readouterr().out == "v1\n"


def test_models_list_columns_line_up_under_their_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = Registry(tmp_path)
    for seed in range(2):
        registry.promote(registry.save(random_stepper(ModelSpec(), seed), FeatureParams(), {}))
    capsys.readouterr()
    assert main(["models", "list", "--model-dir", str(tmp_path)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and rows[1].startswith("*")
    created = header.index("created")
    for row in rows:
        assert row[created - 1] == " " and row[created : created + 4].isdigit()  # the year
        assert len(row) == len(header)  # serving_mase, the last column, right-aligned under it


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "drawn"), [(Terminal(), True), (io.StringIO(), False)])
def test_the_backtest_draws_its_progress_bar_only_on_a_terminal(
    stream: io.StringIO, drawn: bool
) -> None:
    bar = ProgressBar("backtest lstm", 10, stream)
    bar.update(Totals(received=5))
    bar.close()
    assert stream.getvalue() == ("\rbacktest lstm [###############...............] 5/10 ticks\n"
                                 if drawn else "")  # fmt: skip
