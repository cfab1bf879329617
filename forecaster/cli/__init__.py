"""The `forecaster` command line.

Heavy modules are imported inside each command, so `--help` answers at once, and each
command checks its arguments, files and directories before it imports TensorFlow. A
flag that sets a setting shows the setting's default, read from Settings.

Exit codes: 0 done; 2 a mistake in the command line (an unknown, missing or wrong
argument or flag value); 1 anything else that failed at run time (a file, directory,
broker or service that is not what the command needs, bad settings in the config file
or the environment, work that failed); 130 interrupted; 141 (128 + SIGPIPE) the reader
of stdout went away (`forecaster run | head`). Every failure is one
`forecaster: error: ...` line on stderr.

Modules: ``app`` (main: parse, load settings, exit codes), ``flags`` (parsers and
flags), ``checks`` (before the work), and the commands: ``streaming`` (run, replay,
produce), ``training`` (train, backtest), ``models`` (models, retrain).
"""

from forecaster.cli.app import main

__all__ = ["main"]
