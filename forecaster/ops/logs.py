"""Where logs go: stderr, one line per record, and nothing else there.

Forecasts go to stdout (or a file) and dead letters to a file of their own, so each
stream can be captured as JSON lines; logs share a stream with neither. TensorFlow
writes its start-up notes (CUDA probes, oneDNN, graph rewrites, several of them worded
like errors) straight to stderr from C++; they are silenced unless the log level is
DEBUG. The variables must be set before TensorFlow is imported, and are inherited by
the training child process.

>>> environ: dict[str, str] = {}
>>> quiet_tensorflow("INFO", environ)
>>> environ["TF_CPP_MIN_LOG_LEVEL"]
'3'
>>> quiet_tensorflow("DEBUG", environ := {})
>>> environ
{}
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What TensorFlow's C++ side reads: 3 keeps only fatal messages.
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def configure(level: str) -> None:
    """Log records of ``level`` and above to stderr; TensorFlow's noise off below DEBUG."""
    quiet_tensorflow(level, os.environ)
    logging.basicConfig(level=level.upper(), format=FORMAT, stream=sys.stderr)
    if level.upper() != "DEBUG":
        for name in ("tensorflow", "absl", "h5py"):
            logging.getLogger(name).setLevel(logging.ERROR)


def quiet_tensorflow(level: str, environ: MutableMapping[str, str]) -> None:
    """Set TensorFlow's log variables in ``environ``, unless the level is DEBUG or the user
    set them already."""
    if level.upper() == "DEBUG":
        return
    for name, value in QUIET_TENSORFLOW.items():
        environ.setdefault(name, value)
