"""The commands that stream ticks: `run` (the service), `replay` (a file through its
engine, as fast as it goes) and `produce` (a file onto a Kafka topic)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from forecaster.cli.checks import check_brokers, check_model_dir, check_output, check_ticks
from forecaster.cli.flags import (
    EPILOG,
    MODEL_DIR_SERVED,
    UsageError,
    command,
    common,
    not_negative,
    setting,
    tick_csv,
)
from forecaster.config import PROCESSING_GUARANTEES, Settings
from forecaster.config.settings import KAFKA_CLIENTS


def add_run(commands: Any) -> None:
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
    common(run, MODEL_DIR_SERVED)
    setting(run, "--metrics-port", type=int)
    setting(run, "--input")
    setting(run, "--rate", type=not_negative)
    setting(run, "--forecasts-out")
    setting(run, "--dead-letters-out")
    setting(run, "--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]")
    for flag in ("--input-topic", "--output-topic", "--dlq-topic", "--group-id", "--state-dir"):
        setting(run, flag)
    setting(run, "--kafka-client", choices=KAFKA_CLIENTS)
    setting(run, "--processing-guarantee", choices=PROCESSING_GUARANTEES)
    command(run, _run)


def add_replay(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="push a tick file through the engine and write every forecast",
        description="Replay INPUT.csv through exactly the engine the service runs, as fast as "
        "possible, writing one forecast per accepted tick to --out and each rejected row with "
        "its reason to --rejects. Without a promoted model in --model-dir the first model is "
        "trained from the first window of the data, at the same point on every run.",
        epilog=EPILOG,
    )
    tick_csv(replay)
    replay.add_argument(
        "--out", type=Path, required=True, metavar="FORECASTS.jsonl", help="forecasts file"
    )
    setting(replay, "--rejects", "dead_letters_out", metavar="REJECTS.jsonl")
    common(replay, MODEL_DIR_SERVED)
    command(replay, _replay)


def add_produce(commands: Any) -> None:
    produce = commands.add_parser(
        "produce",
        help="publish a tick CSV to a Kafka topic as JSON ticks keyed by series",
        description="Publish every row of INPUT.csv to --topic, in file order, as a JSON tick "
        "keyed by its series, for demos and load tests. Rows that are not valid ticks are sent "
        "as their best JSON rendering, so the service dead-letters them; the summary counts them.",
        epilog=EPILOG,
    )
    tick_csv(produce)
    produce.add_argument("--config", type=Path, help="TOML settings file")
    setting(produce, "--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]",
            help="Kafka brokers to publish to (required)")  # fmt: skip
    produce.add_argument("--topic", help="topic to publish to (default: the input_topic setting)")
    produce.add_argument("--rate", dest="publish_rate", type=not_negative, default=0.0,
                         metavar="N", help="messages per second (0 = as fast as possible; "
                         "default: %(default)s)")  # fmt: skip
    command(produce, _produce)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.bootstrap_servers:
        check_ticks(settings.input_path())
        # Only what the user named: a default destination is the service's to create.
        if settings.forecasts_out != Settings.forecasts_out:
            check_output(settings.forecasts_out, "forecasts file")
        if settings.dead_letters_out != Settings.dead_letters_out:
            check_output(settings.dead_letters_out, "dead letters file")
    check_model_dir(settings)
    from forecaster.service import run_service

    run_service(settings)
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    check_ticks(args.input_csv)
    check_output(str(args.out), "--out")
    check_output(settings.dead_letters_out, "--rejects")
    check_model_dir(settings)
    from forecaster.service import replay

    replay(settings, args.input_csv, args.out, settings.dead_letters_out)
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.bootstrap_servers:
        raise UsageError(f"produce needs --bootstrap-servers (see {args.prog} --help)")
    check_ticks(args.input_csv)
    check_brokers(settings.bootstrap_servers)
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
