"""`forecaster`: parse the command line, load the settings, run the command, and turn every
failure into its exit code and one line on stderr (see the package's docstring)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from forecaster import __version__, config
from forecaster.cli import models, streaming, training
from forecaster.cli.flags import EPILOG, SETTING_FLAGS, Parser, UsageError
from forecaster.errors import ConfigError, ForecasterError
from forecaster.ops import logs

FAILED, USAGE = 1, 2
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports `yes | head -1` for yes
# In the order `forecaster --help` lists them.
COMMANDS = (
    streaming.add_run,
    streaming.add_replay,
    training.add_train,
    streaming.add_produce,
    training.add_backtest,
    models.add_models,
    models.add_retrain,
)


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
    parser, names = _parser()
    args, extras = parser.parse_known_args(argv)
    prog = getattr(args, "prog", "forecaster")
    if extras:  # of the command, not (as argparse has it) of `forecaster` itself
        raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see {prog} --help)")
    if not hasattr(args, "command"):
        raise UsageError(f"name a command: {', '.join(names)} (see forecaster --help)")
    settings = _settings(args)
    logs.configure(settings.log_level)
    result: int = args.command(args, settings)
    return result


def _parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of every command, and the commands' names."""
    parser = Parser(
        prog="forecaster",
        description="Streaming per-series LSTM/GRU price forecaster: one forecast per tick.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"forecaster {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser, list(commands.choices or ())


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


def _settings(args: argparse.Namespace) -> config.Settings:
    """Settings of file, environment and flags; a flag value that is wrong on its own is a
    usage mistake (exit 2), one that clashes with the file or environment is not."""
    named: dict[str, str] = getattr(args, SETTING_FLAGS, {})
    flags = {name: value for name in named if (value := getattr(args, name)) is not None}
    try:
        return config.load(args.config, os.environ, flags)
    except ConfigError as exc:
        if wrong := _wrong_flag(flags, named):
            raise UsageError(f"{wrong} (see {args.prog} --help)") from exc
        raise


def _wrong_flag(flags: dict[str, Any], named: dict[str, str]) -> str:
    """Why the first flag that is wrong whatever else is set is wrong ('' if none is)."""
    for name, value in flags.items():
        try:
            config.Settings(**{name: value})
        except ConfigError as exc:
            return f"argument {named[name]}: {exc}"
    return ""
