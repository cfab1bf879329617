"""The commands that fit and judge models on a tick file: `train` and `backtest`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from forecaster.cli.checks import (
    check_model_dir,
    check_readable,
    check_report_dir,
    check_ticks,
    require_model_dir,
)
from forecaster.cli.flags import (
    EPILOG,
    MODEL_DIR_REQUIRED,
    command,
    common,
    positive,
    setting,
    tick_csv,
)
from forecaster.config import CELLS, Settings


def add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train a model on a history file and save it as a new promoted version",
        description="Compute the engine's features over INPUT.csv, fit a Keras LSTM/GRU to "
        "predict each series' next standardised log-return, and save it in --model-dir as a "
        "versioned artifact (Keras native format + metadata.json) that becomes the promoted one.",
        epilog=EPILOG,
    )
    tick_csv(train)
    common(train, MODEL_DIR_REQUIRED)
    setting(train, "--cell", choices=CELLS)
    setting(train, "--layers", type=int)
    setting(train, "--units", type=int)
    setting(train, "--epochs", "train_epochs", type=positive)
    setting(train, "--seed", type=int)
    command(train, _train)


def add_backtest(commands: Any) -> None:
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
    tick_csv(backtest)
    backtest.add_argument(
        "--report", type=Path, required=True, metavar="DIR",
        help="directory for metrics.json, report.html, the PNGs and the forecasts",
    )  # fmt: skip
    backtest.add_argument(
        "--cell", dest="cells", action="append", choices=CELLS,
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
    command(backtest, _backtest)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    require_model_dir(settings, args)
    check_model_dir(settings)
    check_ticks(args.input_csv)
    from forecaster.service import train

    # Keras' in-place progress bar is a hundred redrawn lines per epoch in a log file.
    verbose = 1 if sys.stdout.isatty() else 2
    print(train(settings, args.input_csv, verbose).stepper.version)
    return 0


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    check_ticks(args.input_csv)
    if args.oracle is not None:
        check_readable(args.oracle, "oracle file")
    check_report_dir(args.report)
    from forecaster.evaluation.backtest.run import backtest

    metrics = backtest(
        settings, args.input_csv, args.report,
        cells=args.cells or [settings.cell], oracle=args.oracle, series=args.series,
    )  # fmt: skip
    for row, scores in metrics["kinds"]["all"].items():
        print(f"{row:>8}  MASE {scores['mase']:.4f}  ({scores['points']} points)")
    print(f"report: {args.report / 'report.html'}")
    return 0
