"""The command line's parsers and flags; a flag that sets a setting shows its Settings default.

>>> parser = Parser(prog="forecaster demo")
>>> setting(parser, "--rate", type=float)
>>> " ".join(parser.format_help().split()).endswith("as fast as possible) (default: 500.0)")
True
>>> parser.parse_args(["--rate", "2"]).setting_flags
{'rate': '--rate'}
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from forecaster.config import LOG_LEVELS, Settings
from forecaster.errors import ForecasterError

EPILOG = (
    "Every setting can also come from a TOML file (--config) and from FORECASTER_* environment "
    "variables; flags win over the environment, which wins over the file. See README.md."
)
MODEL_DIR_SERVED = (
    "model registry directory: its promoted version serves, trained ones are saved in it "
    "(default: in memory only)"
)
MODEL_DIR_REQUIRED = "model registry directory (required here; or FORECASTER_MODEL_DIR)"
# The namespace attribute naming the Settings field each setting flag sets, and its flag.
SETTING_FLAGS = "setting_flags"
_FIELDS = {spec.name: spec for spec in fields(Settings)}


class UsageError(ForecasterError):
    """A mistake in the command line itself: exit 2, as argparse's own mistakes."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one `forecaster: error:` line naming the command's help."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def setting(
    parser: argparse.ArgumentParser, flag: str, name: str = "", help: str = "", **options: Any
) -> None:
    """``flag`` sets the Settings field ``name`` (by default the flag's own name). Its help
    is the field's unless ``help`` says it for this command, and ends with the field's
    default; an empty default is not shown (the help says what empty means)."""
    own_name = flag.removeprefix("--").replace("-", "_")
    name = name or own_name
    if name != own_name and not {"choices", "metavar"} & options.keys():
        options["metavar"] = own_name.upper()  # --epochs EPOCHS, not --epochs TRAIN_EPOCHS
    spec = _FIELDS[name]
    shown = f" (default: {spec.default})" if spec.default != "" else ""
    text = (help or spec.metadata["help"]) + shown
    parser.add_argument(flag, dest=name, help=text.replace("%", "%%"), **options)
    named = parser.get_default(SETTING_FLAGS) or {}
    parser.set_defaults(**{SETTING_FLAGS: {**named, name: flag}})


def common(parser: argparse.ArgumentParser, model_dir_help: str) -> None:
    """The flags of every command that works with models: config file, models, log level."""
    parser.add_argument("--config", type=Path, help="TOML settings file")
    setting(parser, "--model-dir", help=model_dir_help)
    setting(parser, "--log-level", choices=LOG_LEVELS, type=str.upper)


def tick_csv(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input_csv", type=Path, metavar="INPUT.csv", help="tick CSV: series,ts,price[,volume]"
    )


def command(parser: argparse.ArgumentParser, run: Any) -> None:
    """Make ``run(args, settings)`` what the command ``parser`` parses does."""
    parser.set_defaults(command=run, prog=parser.prog)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value
