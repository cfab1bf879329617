"""The `forecaster` command line.

Heavy modules are imported inside each command, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster import __version__
from forecaster.errors import ForecasterError

if TYPE_CHECKING:
    import urllib.error

EPILOG = (
    "Every setting can also come from a TOML file (--config) and from FORECASTER_* environment "
    "variables; flags win over the environment, which wins over the file. See README.md."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return 2
    try:
        settings = _settings(args)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        result: int = args.command(args, settings)
        return result
    except ForecasterError as exc:
        print(f"forecaster: error: {exc}", file=sys.stderr)
        return 1


def _settings(args: argparse.Namespace) -> Any:
    from forecaster import config

    overrides = {key: getattr(args, key, None) for key in _SETTING_FLAGS}
    return config.load(args.config, os.environ, overrides)


# Flags that map one to one onto Settings fields (dest = field name).
_SETTING_FLAGS = ("model_dir", "metrics_port", "input", "rate", "forecasts_out", "cell", "layers",
                  "units", "train_epochs", "seed", "bootstrap_servers", "input_topic",
                  "output_topic", "dlq_topic", "group_id", "state_dir")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Streaming per-series LSTM/GRU price forecaster: one forecast per tick.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"forecaster {__version__}")
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser(
        "run",
        help="run the service (default: replay sample data at a live pace, no Kafka needed)",
        description="Run the service until SIGTERM/SIGINT. With no configuration it replays "
        "sample_data/ticks.csv at --rate ticks/s in a loop, writes forecasts as JSON lines to "
        "stdout and dead letters to stderr, and serves /metrics, /healthz and /readyz. With "
        "--bootstrap-servers it consumes ticks from Kafka and writes forecasts and dead letters "
        "to topics instead.",
        epilog=EPILOG,
    )
    _common(run)
    run.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics, /healthz, /readyz (0 = off; default 9108)",
    )
    run.add_argument("--input", help="tick CSV to replay (default: sample_data/ticks.csv)")
    run.add_argument(
        "--rate", type=float, help="ticks per second to replay at (0 = flat out; default 500)"
    )
    run.add_argument(
        "--forecasts-out", help="forecasts JSON lines: a path or - for stdout (default -)"
    )
    _bootstrap_servers(run)
    run.add_argument("--input-topic", help="topic of JSON ticks (default ticks)")
    run.add_argument("--output-topic", help="topic of forecasts (default forecasts)")
    run.add_argument("--dlq-topic", help="topic of rejected messages (default ticks.dlq)")
    run.add_argument("--group-id", help="consumer group (default forecaster)")
    run.add_argument(
        "--state-dir", help="directory of per-partition state checkpoints (default: none)"
    )
    run.set_defaults(command=_run)

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
    replay.add_argument("--rejects", default="stderr", metavar="REJECTS.jsonl",
                        help="dead letters file (default: stderr)")  # fmt: skip
    _common(replay)
    replay.set_defaults(command=_replay)

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
    _common(train)
    train.add_argument("--cell", choices=("lstm", "gru"), help="recurrent cell (default lstm)")
    train.add_argument("--layers", type=int, help="recurrent layers (default 2)")
    train.add_argument("--units", type=int, help="units per layer (default 32)")
    train.add_argument("--epochs", dest="train_epochs", type=int, help="most epochs (default 30)")
    train.add_argument("--seed", type=int, help="training seed (default 0)")
    train.set_defaults(command=_train)

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
    _bootstrap_servers(produce)
    produce.add_argument("--topic", help="topic to publish to (default: the input_topic setting)")
    produce.add_argument("--rate", dest="publish_rate", type=float, default=0.0, metavar="N",
                         help="messages per second (default 0 = as fast as possible)")  # fmt: skip
    produce.set_defaults(command=_produce)
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
    actions = models.add_subparsers(title="actions", required=True)
    for name, command, text in (
        ("list", _models_list, "every version, newest last; * marks the promoted one"),
        ("promote", _models_promote, "promote VERSION"),
        ("rollback", _models_rollback, "promote the previously promoted version again"),
    ):
        action = actions.add_parser(name, help=text, description=text, epilog=EPILOG)
        if name == "promote":
            action.add_argument("version", metavar="VERSION")
        _common(action)
        action.set_defaults(command=command)


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
        "--url", default="http://localhost:9108", help="the service's metrics address"
    )
    retrain.add_argument(
        "--token",
        help="the service's admin token (default: FORECASTER_ADMIN_TOKEN, which is better: a "
        "flag shows in the process list)",
    )
    retrain.add_argument("--config", type=Path, help="TOML settings file")
    retrain.set_defaults(command=_retrain)


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
    backtest.set_defaults(command=_backtest)


def _bootstrap_servers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,HOST:PORT]",
        help="Kafka brokers; for run, setting them switches from the tick file to Kafka",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--model-dir", help="model registry directory (default: in memory only)")


def _run(args: argparse.Namespace, settings: Any) -> int:
    from forecaster.service import run_service

    run_service(settings)
    return 0


def _replay(args: argparse.Namespace, settings: Any) -> int:
    from forecaster.service import replay

    replay(settings, args.input_csv, args.out, args.rejects)
    return 0


def _train(args: argparse.Namespace, settings: Any) -> int:
    from forecaster.service import train

    if not settings.model_dir:
        print(
            "forecaster: error: train needs --model-dir (or FORECASTER_MODEL_DIR)", file=sys.stderr
        )
        return 2
    print(train(settings, args.input_csv).stepper.version)
    return 0


def _backtest(args: argparse.Namespace, settings: Any) -> int:
    from forecaster.backtest.run import backtest

    metrics = backtest(
        settings, args.input_csv, args.report,
        cells=args.cells or [settings.cell], oracle=args.oracle, series=args.series,
    )  # fmt: skip
    for row, scores in metrics["kinds"]["all"].items():
        print(f"{row:>8}  MASE {scores['mase']:.4f}  ({scores['points']} points)")
    print(f"report: {args.report / 'report.html'}")
    return 0


def _produce(args: argparse.Namespace, settings: Any) -> int:
    from forecaster.produce import publish

    if not settings.bootstrap_servers:
        print("forecaster: error: produce needs --bootstrap-servers", file=sys.stderr)
        return 2
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


def _registry(settings: Any) -> Any:
    from forecaster.errors import ConfigError
    from forecaster.registry import Registry

    if not settings.model_dir:
        raise ConfigError("models needs --model-dir (or FORECASTER_MODEL_DIR)")
    return Registry(Path(settings.model_dir))


def _models_list(args: argparse.Namespace, settings: Any) -> int:
    registry = _registry(settings)
    promoted = registry.promoted()
    print(f"{'':2}{'version':<20} {'created':<27} {'gate':<9} {'mase':>7} {'serving_mase':>12}")
    for version in registry.versions():
        metadata = registry.metadata(version)
        checked = metadata.get("validation", {})
        decision = {True: "passed", False: "rejected"}.get(checked.get("promote"), "-")
        mase, serving = checked.get("candidate_mase"), checked.get("serving_mase")
        print(f"{'*' if version == promoted else '':2}{version:<20} {metadata['created']:<27} "
              f"{decision:<9} {_figure(mase):>7} {_figure(serving):>12}")  # fmt: skip
    return 0


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _models_promote(args: argparse.Namespace, settings: Any) -> int:
    from forecaster.registry import check_version

    version = check_version(args.version)
    registry = _registry(settings)
    registry.promote(version)
    print(f"promoted {args.version}")
    return 0


def _models_rollback(args: argparse.Namespace, settings: Any) -> int:
    print(f"promoted {_registry(settings).rollback()}")
    return 0


def _retrain(args: argparse.Namespace, settings: Any) -> int:
    import urllib.error

    url, token = f"{args.url.rstrip('/')}/retrain", args.token or settings.admin_token
    if problem := _retrain_problem(url, token):
        print(f"forecaster: error: {problem}", file=sys.stderr)
        return 2
    try:
        print(_post(url, token))
    except urllib.error.HTTPError as answer:
        answer.close()
        print(f"forecaster: error: {_refusal(args.url, answer, bool(token))}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"forecaster: error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


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
