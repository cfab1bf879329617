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
from typing import Any

from forecaster import __version__
from forecaster.errors import ForecasterError

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
                  "output_topic", "dlq_topic", "group_id")  # fmt: skip


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
    return parser


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
