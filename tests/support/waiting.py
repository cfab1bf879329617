"""Waiting on a condition with a deadline, instead of sleeping and hoping."""

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], what: str, deadline_s: float = 300.0) -> None:
    """Poll ``condition`` until it holds; fail the test, naming ``what``, at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
