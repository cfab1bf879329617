"""Waiting on a condition with a deadline, instead of sleeping and hoping."""

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], bool], what: str, deadline_s: float = 300.0) -> None:
    """Poll ``condition`` until it holds; fail the test, naming ``what``, at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def probe_until(
    probe: Callable[[], Any], done: Callable[[Any], bool], deadline_s: float = 300.0
) -> Any:
    """``probe()`` until ``done(value)`` or the deadline; returns the last value, for the
    caller to assert on (its failure message can then show what was seen)."""
    deadline = time.monotonic() + deadline_s
    value = probe()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)  # a polling interval, not a guess at how long anything takes
        value = probe()
    return value
