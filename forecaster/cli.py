"""The `forecaster` command line.

Heavy modules are imported inside each command, so `--help` answers at once, and each
command checks its arguments, files and directories before it imports TensorFlow.

Exit codes: 0 done; 2 a mistake in the command line (an unknown, missing or wrong
argument or flag value); 1 anything else that failed at run time (a file, directory,
broker or service that is not what the command needs, bad settings in the config file
or the environment, work that failed); 130 interrupted; 141 (128 + SIGPIPE) the reader
of stdout went away (`forecaster run | head`). Every failure is one
`forecaster: error: ...` line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from forecaster import __version__
from forecaster.errors import ConfigError, DeliveryError, ForecasterError
from forecaster.ops import logs

if TYPE_CHECKING:
    import urllib.error

    from forecaster.config import Settings

EPILOG = (
    "Every setting can also come from a TOML file (--config) and from FORECASTER_* environment "
    "variables; flags win over the environment, which wins over the file. See README.md."
)
COMMANDS = ("run", "replay", "train", "produce", "backtest", "models", "retrain")
FAILED, USAGE = 1, 2
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports `yes | head -1` for yes
BROKER_CHECK_S = 5.0
KAFKA_PORT = 9092
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(ForecasterError):
    """A mistake in the command line itself: exit 2, as argparse's own mistakes."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one `forecaster: error:` line naming the command's help."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        _discard_stdout()
        return BROKEN_PIPE
    except KeyboardInterrupt:
        return INTERRUPTED
    except UsageError as exc:
        return _fail(exc, USAGE)
    except (ForecasterError, OSError) as exc:
        return _fail(exc, FAILED)


def _main(argv: Sequence[str] | None) -> int:
    args, extras = _parser().parse_known_args(argv)
    prog = getattr(args, "prog", "forecaster")
    if extras:  # of the command, not (as argparse has it) of `forecaster` itself
        raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see {prog} --help)")
    if not hasattr(args, "command"):
        raise UsageError(f"name a command: {', '.join(COMMANDS)} (see forecaster --help)")
    settings = _settings(args)
    logs.configure(settings.log_level)
    result: int = args.command(args, settings)
    return result


def _fail(exc: Exception, code: int) -> int:
    print(f"forecaster: error: {exc}", file=sys.stderr)
    return code


def _discard_stdout() -> None:
    """Point stdout at /dev/null: its reader has gone, and the interpreter's last flush of
    what is still buffered would fail again, as 'Exception ignored ...' on stderr."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file (under a test's capture)
        pass


def _settings(args: argparse.Namespace) -> Settings:
    """Settings of file, environment and flags; a flag value that is wrong on its own is a
    usage mistake (exit 2), one that clashes with the file or environment is not."""
    from forecaster import config

    flags = {
        key: value for key in _SETTING_FLAGS if (value := getattr(args, key, None)) is not None
    }
    try:
        return config.load(args.config, os.environ, flags)
    except ConfigError as exc:
        if wrong := _wrong_flag(flags):
            raise UsageError(f"{wrong} (see {args.prog} --help)") from exc
        raise


def _wrong_flag(flags: dict[str, Any]) -> str:
    """Why the first flag that is wrong whatever else is set is wrong ('' if none is)."""
    from forecaster.config import Settings

    for key, value in flags.items():
        try:
            Settings(**{key: value})
        except ConfigError as exc:
            return f"argument {_FLAG_NAMES.get(key, '--' + key.replace('_', '-'))}: {exc}"
    return ""


# Flags that map one to one onto Settings fields (dest = field name).
_SETTING_FLAGS = ("model_dir", "metrics_port", "input", "rate", "forecasts_out", "cell", "layers",
                  "units", "train_epochs", "seed", "bootstrap_servers", "input_topic",
                  "output_topic", "dlq_topic", "group_id", "state_dir", "dead_letters_out",
                  "log_level")  # fmt: skip
_FLAG_NAMES = {"train_epochs": "--epochs"}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="forecaster",
        description="Streaming per-series LSTM/GRU price forecaster: one forecast per tick.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"forecaster {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the service (default: replay sample data at a live pace, no Kafka needed)",
        description="Run the service until SIGTERM/SIGINT. With no configuration it replays "
        "sample_data/ticks.csv at --rate ticks/s in a loop, writes forecasts as JSON lines to "
        "stdout, dead letters as JSON lines to dead-letters.jsonl and its log to stderr, and "
        "serves /metrics, /healthz and /readyz. With "
        "--bootstrap-servers it consumes ticks from Kafka and writes forecasts and dead letters "
        "to topics instead.",
        epilog=EPILOG,
    )
    _common(run, MODEL_DIR_SERVED)
    run.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics, /healthz, /readyz (0 = off; default 9108)",
    )
    run.add_argument("--input", help="tick CSV to replay (default: sample_data/ticks.csv)")
    run.add_argument("--rate", type=_not_negative,
                     help="ticks per second to replay at (0 = flat out; default 500)")  # fmt: skip
    run.add_argument(
        "--forecasts-out", help="forecasts JSON lines: a path or - for stdout (default -)"
    )
    run.add_argument(
        "--dead-letters-out",
        help="dead letters JSON lines: a path, - for stdout or stderr (default dead-letters.jsonl)",
    )
    run.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,HOST:PORT]",
        help="Kafka brokers; setting them switches from the tick file to Kafka",
    )
    run.add_argument("--input-topic", help="topic of JSON ticks (default ticks)")
    run.add_argument("--output-topic", help="topic of forecasts (default forecasts)")
    run.add_argument("--dlq-topic", help="topic of rejected messages (default ticks.dlq)")
    run.add_argument("--group-id", help="consumer group (default forecaster)")
    run.add_argument(
        "--state-dir", help="directory of per-partition state checkpoints (default: none)"
    )
    _command(run, _run)

    replay = commands.add_parser(
        "replay",
        help="push a tick file through the engine and write every forecast",
        description="Replay INPUT.csv through exactly the engine the service runs, as fast as "
        "possible, writing one forecast per accepted tick to --out and each rejected row with "
        "its reason to --rejects. Without a promoted model in --model-dir the first model is "
        "trained from the first window of the data, at the same point on every run.",
        epilog=EPILOG,
    )
    replay.add_argument(
        "input_csv", type=Path, metavar="INPUT.csv", help="tick CSV: series,ts,price[,volume]"
    )
    replay.add_argument(
        "--out", type=Path, required=True, metavar="FORECASTS.jsonl", help="forecasts file"
    )
    replay.add_argument(
        "--rejects",
        dest="dead_letters_out",
        metavar="REJECTS.jsonl",
        help="dead letters JSON lines: a path, - or stderr (default dead-letters.jsonl)",
    )
    _common(replay, MODEL_DIR_SERVED)
    _command(replay, _replay)

    train = commands.add_parser(
        "train",
        help="train a model on a history file and save it as a new promoted version",
        description="Compute the engine's features over INPUT.csv, fit a Keras LSTM/GRU to "
        "predict each series' next standardised log-return, and save it in --model-dir as a "
        "versioned artifact (Keras native format + metadata.json) that becomes the promoted one.",
        epilog=EPILOG,
    )
    train.add_argument(
        "input_csv", type=Path, metavar="INPUT.csv", help="tick CSV: series,ts,price[,volume]"
    )
    _common(train, MODEL_DIR_REQUIRED)
    train.add_argument("--cell", choices=("lstm", "gru"), help="recurrent cell (default lstm)")
    train.add_argument("--layers", type=int, help="recurrent layers (default 2)")
    train.add_argument("--units", type=int, help="units per layer (default 32)")
    train.add_argument("--epochs", dest="train_epochs", type=_positive,
                       help="most epochs (default 30)")  # fmt: skip
    train.add_argument("--seed", type=int, help="training seed (default 0)")
    _command(train, _train)

    produce = commands.add_parser(
        "produce",
        help="publish a tick CSV to a Kafka topic as JSON ticks keyed by series",
        description="Publish every row of INPUT.csv to --topic, in file order, as a JSON tick "
        "keyed by its series, for demos and load tests. Rows that are not valid ticks are sent "
        "as their best JSON rendering, so the service dead-letters them; the summary counts them.",
        epilog=EPILOG,
    )
    produce.add_argument(
        "input_csv", type=Path, metavar="INPUT.csv", help="tick CSV: series,ts,price[,volume]"
    )
    produce.add_argument("--config", type=Path, help="TOML settings file")
    produce.add_argument("--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]",
                         help="Kafka brokers to publish to (required)")  # fmt: skip
    produce.add_argument("--topic", help="topic to publish to (default: the input_topic setting)")
    produce.add_argument("--rate", dest="publish_rate", type=_not_negative, default=0.0,
                         metavar="N",
                         help="messages per second (default 0 = as fast as possible)")  # fmt: skip
    _command(produce, _produce)
    _backtest_parser(commands)
    _models_parser(commands)
    _retrain_parser(commands)
    return parser


def _models_parser(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="list the model registry, promote a version, roll back",
        description="Work on the model registry in --model-dir: `list` shows every version "
        "(newest last) with its holdout figures, `promote VERSION` makes it the version a "
        "service serves when it starts, `rollback` promotes the previously promoted version "
        "again. A version whose files do not match their SHA-256 is refused.",
        epilog=EPILOG,
    )
    actions = models.add_subparsers(title="actions", metavar="ACTION", required=True)
    for name, command, text in (
        ("list", _models_list, "every version, newest last; * marks the promoted one"),
        ("promote", _models_promote, "promote VERSION"),
        ("rollback", _models_rollback, "promote the previously promoted version again"),
    ):
        action = actions.add_parser(name, help=text, description=text, epilog=EPILOG)
        if name == "promote":
            action.add_argument("version", metavar="VERSION")
        _common(action, MODEL_DIR_REQUIRED)
        _command(action, command)


def _retrain_parser(commands: Any) -> None:
    retrain = commands.add_parser(
        "retrain",
        help="ask a running service to retrain now",
        description="POST /retrain to a running service: it reads its training window at the "
        "next batch boundary, trains in the background, and swaps the result in only if it "
        "passes the holdout gate. Follow the outcome on forecaster_retrains_total. The service "
        "only takes it with its admin token (its FORECASTER_ADMIN_TOKEN), sent as a Bearer token.",
        epilog=EPILOG,
    )
    retrain.add_argument(
        "--url",
        default="http://localhost:9108",
        help="the service's metrics address (default: %(default)s)",
    )
    retrain.add_argument(
        "--token",
        help="the service's admin token (default: FORECASTER_ADMIN_TOKEN, which is better: a "
        "flag shows in the process list)",
    )
    retrain.add_argument("--config", type=Path, help="TOML settings file")
    _command(retrain, _retrain)


def _backtest_parser(commands: Any) -> None:
    backtest = commands.add_parser(
        "backtest",
        help="score the service's forecasts over a tick file against baselines; write a report",
        description="Replay INPUT.csv through the service's own replay path once per --cell, "
        "each starting without a model (first model bootstrapped from the data, strictly "
        "causal), score every forecast against the realised next price next to the naive, "
        "drift, EWMA and Holt baselines (and the generator's oracle when oracle.csv is found), "
        "and write metrics.json, report.html and PNGs into --report.",
        epilog=EPILOG,
    )
    backtest.add_argument(
        "input_csv", type=Path, metavar="INPUT.csv", help="tick CSV: series,ts,price[,volume]"
    )
    backtest.add_argument(
        "--report", type=Path, required=True, metavar="DIR",
        help="directory for metrics.json, report.html, the PNGs and the forecasts",
    )  # fmt: skip
    backtest.add_argument(
        "--cell", dest="cells", action="append", choices=("lstm", "gru"),
        help="cell type to backtest; repeat to compare (default: the cell setting)",
    )  # fmt: skip
    backtest.add_argument(
        "--oracle", type=Path, metavar="ORACLE.csv",
        help="true conditional forecasts (default: oracle.csv beside INPUT.csv, if any)",
    )  # fmt: skip
    backtest.add_argument(
        "--series", action="append", default=[], metavar="NAME",
        help="series to plot forecast vs actual for; repeatable (default: one per kind)",
    )  # fmt: skip
    backtest.add_argument("--config", type=Path, help="TOML settings file")
    _command(backtest, _backtest)


MODEL_DIR_SERVED = (
    "model registry directory: its promoted version serves, trained ones are saved in it "
    "(default: in memory only)"
)
MODEL_DIR_REQUIRED = "model registry directory (required here; or FORECASTER_MODEL_DIR)"


def _common(parser: argparse.ArgumentParser, model_dir_help: str) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--model-dir", help=model_dir_help)
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.upper,
        help="log to stderr from this level on (default INFO; DEBUG also shows TensorFlow's "
        "start-up notes)",
    )


def _command(parser: argparse.ArgumentParser, command: Any) -> None:
    parser.set_defaults(command=command, prog=parser.prog)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.bootstrap_servers:
        from forecaster.config import Settings

        _check_ticks(settings.input_path())
        # Only what the user named: a default destination is the service's to create.
        if settings.forecasts_out != Settings.forecasts_out:
            _check_output(settings.forecasts_out, "forecasts file")
        if settings.dead_letters_out != Settings.dead_letters_out:
            _check_output(settings.dead_letters_out, "dead letters file")
    _check_model_dir(settings)
    from forecaster.service import run_service

    run_service(settings)
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    _check_ticks(args.input_csv)
    _check_output(str(args.out), "--out")
    _check_output(settings.dead_letters_out, "--rejects")
    _check_model_dir(settings)
    from forecaster.service import replay

    replay(settings, args.input_csv, args.out, settings.dead_letters_out)
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    _require_model_dir(settings, args)
    _check_model_dir(settings)
    _check_ticks(args.input_csv)
    from forecaster.service import train

    # Keras' in-place progress bar is a hundred redrawn lines per epoch in a log file.
    verbose = 1 if sys.stdout.isatty() else 2
    print(train(settings, args.input_csv, verbose).stepper.version)
    return 0


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    _check_ticks(args.input_csv)
    if args.oracle is not None:
        _check_readable(args.oracle, "oracle file")
    _check_report_dir(args.report)
    from forecaster.evaluation.backtest.run import backtest

    metrics = backtest(
        settings, args.input_csv, args.report,
        cells=args.cells or [settings.cell], oracle=args.oracle, series=args.series,
    )  # fmt: skip
    for row, scores in metrics["kinds"]["all"].items():
        print(f"{row:>8}  MASE {scores['mase']:.4f}  ({scores['points']} points)")
    print(f"report: {args.report / 'report.html'}")
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.bootstrap_servers:
        raise UsageError(f"produce needs --bootstrap-servers (see {args.prog} --help)")
    _check_ticks(args.input_csv)
    _check_brokers(settings.bootstrap_servers)
    from forecaster.io.produce import publish

    topic = args.topic or settings.input_topic
    done = publish(
        settings,
        args.input_csv,
        topic,
        args.publish_rate,
        lambda so_far: print(f"{so_far.messages} messages sent ...", file=sys.stderr),
    )
    print(f"{topic}: {done.summary()}")
    return 0


def _registry(settings: Settings, args: argparse.Namespace) -> Any:
    from forecaster.retraining.registry import Registry

    _require_model_dir(settings, args)
    folder = Path(settings.model_dir)
    if not folder.is_dir():
        state = "is not a directory" if folder.exists() else "does not exist"
        raise ForecasterError(f"model directory {folder} {state}")
    return Registry(folder)


def _models_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings, args)
    promoted = registry.promoted()
    rows = [_LIST_HEADER]
    for version in registry.versions():
        metadata = registry.metadata(version)
        checked = metadata.get("validation", {})
        decision = {True: "passed", False: "rejected"}.get(checked.get("promote"), "-")
        mase, serving = checked.get("candidate_mase"), checked.get("serving_mase")
        rows.append(("*" if version == promoted else " ", version, str(metadata["created"]),
                     decision, _figure(mase), _figure(serving)))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(_LIST_HEADER))]
    for row in rows:
        cells = zip(row, widths, _LIST_ALIGN, strict=True)
        print(" ".join(f"{cell:{align}{width}}" for cell, width, align in cells).rstrip())
    return 0


_LIST_HEADER = (" ", "version", "created", "gate", "mase", "serving_mase")
_LIST_ALIGN = ("<", "<", "<", "<", ">", ">")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _models_promote(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.retraining.registry import check_version

    version = check_version(args.version)
    registry = _registry(settings, args)
    registry.promote(version)
    print(f"promoted {args.version}")
    return 0


def _models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    print(f"promoted {_registry(settings, args).rollback()}")
    return 0


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    import urllib.error

    url, token = f"{args.url.rstrip('/')}/retrain", args.token or settings.admin_token
    if problem := _retrain_problem(url, token):
        raise UsageError(problem)
    try:
        print(_post(url, token))
    except urllib.error.HTTPError as answer:
        answer.close()
        raise ForecasterError(_refusal(args.url, answer, bool(token))) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ForecasterError(f"cannot reach {args.url}: {exc}") from None
    return 0


# --- checks before the work: each failure is one line, and comes before TensorFlow starts ---


def _require_model_dir(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.model_dir:
        raise UsageError(f"--model-dir is required (or FORECASTER_MODEL_DIR; see {args.prog} "
                         "--help)")  # fmt: skip


def _check_model_dir(settings: Settings) -> None:
    """A model directory that does not exist yet is created; a file in its place fails."""
    folder = Path(settings.model_dir)
    if settings.model_dir and folder.exists() and not folder.is_dir():
        raise ForecasterError(f"model directory {folder} is not a directory")


def _check_ticks(path: Path) -> None:
    from forecaster.io.files import CsvSource

    CsvSource(path, max_batch=1)  # reads the header only: SourceError if it is no tick CSV


def _check_readable(path: Path, what: str) -> None:
    try:
        path.open("rb").close()
    except OSError as exc:
        raise ForecasterError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _check_output(target: str, what: str) -> None:
    """Fail before the work, not after it, when ``target`` (a path, - or stderr) cannot be
    written; its directory must exist (a typo would otherwise create a tree)."""
    if target in ("-", "stderr"):
        return
    path = Path(target)
    if path.is_dir():
        raise ForecasterError(f"{what} {path} is a directory")
    _check_folder(path.parent, f"{what} {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ForecasterError(f"{what} {path}: cannot write it")


def _check_report_dir(report: Path) -> None:
    if report.exists() and not report.is_dir():
        raise ForecasterError(f"report directory {report} is not a directory")
    _check_folder(report if report.exists() else report.parent, f"report directory {report}")


def _check_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        state = "is not a directory" if folder.exists() else "does not exist"
        raise ForecasterError(f"{what}: {folder} {state}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ForecasterError(f"{what}: cannot write in {folder}")


def _check_brokers(servers: str) -> None:
    """At least one bootstrap server takes a TCP connection: else fail at once, in one line,
    instead of after the Kafka client's retries and their log lines."""
    import socket

    problems = []
    for server in servers.split(","):
        try:
            socket.create_connection(_host_port(server.strip()), BROKER_CHECK_S).close()
            return
        except OSError as exc:
            problems.append(f"{server.strip()}: {exc.strerror or exc}")
    raise DeliveryError(f"cannot reach Kafka at {servers}: {'; '.join(problems)}")


def _host_port(server: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; Kafka's port when none is given) as a socket address."""
    host, colon, port = server.rpartition(":")
    if not colon or host.endswith(":") or "]" in port:  # no port, or an IPv6 address without
        host, port = server, str(KAFKA_PORT)
    if not port.isdigit():
        raise ConfigError(f"bootstrap server {server!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _retrain_problem(url: str, token: str) -> str:
    """What keeps ``url`` and ``token`` from being sent ('' if nothing); never the token."""
    import urllib.parse

    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError as exc:
        return f"--url is no URL: {exc}"
    if scheme not in ("http", "https"):
        return f"--url must be http:// or https://, not {scheme or 'without a scheme'}"
    if token and not (token.isascii() and token.isprintable()):
        return "the admin token cannot be sent in an HTTP header: it must be printable ASCII"
    return ""


def _post(url: str, token: str) -> str:
    """POST ``url`` with ``token`` as Bearer token (if any); the answer's text. Redirects
    are not followed, so the token never goes anywhere but ``url``."""
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # the redirect becomes an HTTPError, reported as such

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    with urllib.request.build_opener(NoRedirects).open(request, timeout=10) as response:
        return str(response.read().decode(errors="replace").strip())


def _refusal(url: str, answer: urllib.error.HTTPError, sent_token: bool) -> str:
    """One line on why the service at ``url`` refused POST /retrain."""
    if answer.code == 401 and sent_token:
        return (f"the service at {url} refused the admin token (401): check --token or "
                "FORECASTER_ADMIN_TOKEN")  # fmt: skip
    if answer.code == 401:
        return (f"the service at {url} needs its admin token (401): pass --token or set "
                "FORECASTER_ADMIN_TOKEN")  # fmt: skip
    if answer.code == 403:
        return (f"POST /retrain is off at {url} (403): start the service with "
                "FORECASTER_ADMIN_TOKEN set")  # fmt: skip
    return f"{url} answered {answer.code} {answer.reason}"
