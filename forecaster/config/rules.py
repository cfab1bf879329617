"""Rules a setting's value must hold, each with the words its error uses.

>>> between(1, 8).says, between(1, 8).holds(9)
('1-8', False)
>>> EPOCH_NS_TIME.holds("1969-12-31T23:59:59Z")
False
>>> TOPIC_NAME.holds("ticks.dlq"), TOPIC_NAME.holds("ticks dlq")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from forecaster.timestamps import rfc3339_ns


@dataclass(frozen=True)
class Rule:
    """What a setting's value must be: ``holds`` it, as ``says`` puts it."""

    says: str
    holds: Callable[[Any], bool]


def at_least(low: float) -> Rule:
    return Rule(f">= {low}", lambda value: value >= low)


def above(low: float) -> Rule:
    return Rule(f"> {low}", lambda value: value > low)


def between(low: int, high: int) -> Rule:
    return Rule(f"{low}-{high}", lambda value: low <= value <= high)


def inside(low: float, high: float) -> Rule:
    return Rule(f"in ({low}, {high})", lambda value: low < value < high)


def one_of(choices: tuple[str, ...], normal: Callable[[str], str] = str) -> Rule:
    """One of ``choices``, once ``normal`` (e.g. ``str.upper``) made it comparable."""
    return Rule(f"one of {choices}", lambda value: normal(value) in choices)


def _in_epoch_ns(text: str) -> bool:
    try:
        return rfc3339_ns(text) >= 0
    except ValueError:
        return False


# Kafka's own rule for a topic's name (kafka.common.internals.Topic): a name that breaks it
# would fail only at the first subscribe or send, as the broker's error.
TOPIC_NAME = Rule(
    "1-249 of the characters a-z, A-Z, 0-9, '.', '_' and '-' (Kafka's topic names)",
    lambda value: re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", value) is not None,
)
NOT_EMPTY = Rule("a text that is not empty", lambda value: value.strip() != "")

# Before 1970 epoch nanoseconds are negative; after 2262 they overflow int64.
EPOCH_NS_TIME = Rule("an RFC 3339 time with a zone, 1970 to 2262", _in_epoch_ns)
