"""Unexpected exceptions while handling one message: a one-line detail for its dead letter,
and a traceback in the log once per kind (not once per message of a flood).

>>> internal_error_detail(ValueError("bad\\nthing"))
'ValueError: bad thing'
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 500

_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def internal_error_detail(exc: BaseException) -> str:
    """The exception's type and text on one line, cut to MAX_DETAIL_CHARS."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:MAX_DETAIL_CHARS]


def log_internal_error(where: str, exc: BaseException) -> None:
    """Log ``exc`` with its traceback the first time this kind (``where``, type) is seen."""
    key = (where, type(exc).__name__)
    with _logged_lock:
        first = key not in _logged
        _logged.add(key)
    if first:
        log.error("internal error %s; the message is a dead letter (internal_error), "
                  "later ones of this kind are logged at DEBUG", where, exc_info=exc)  # fmt: skip
    else:
        log.debug("internal error %s: %s", where, internal_error_detail(exc))
