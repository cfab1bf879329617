"""Retraining events on the data's clock: what a Retrainer did, and at which tick time.

Every run's trigger, every run's outcome and every shadow verdict, each stamped with the
newest tick time the Retrainer had seen. A replay writes them as JSON lines beside its
forecasts when asked (``forecaster.service.replay``), and the backtest marks them on its
rolling-error plot: model versions in the forecasts show what took over and when, the
events show what was tried and turned down, and why a run started.

>>> import io
>>> out = io.StringIO()
>>> write_event = EventWriter(out)
>>> write_event(RetrainEvent(1_767_225_600_000_000_000, "trigger", "decay"))
>>> write_event(RetrainEvent(1_767_225_660_000_000_000, "shadow", "rejected", "gru-1"))
>>> print(out.getvalue(), end="")
{"ts": "2026-01-01T00:00:00.000Z", "kind": "trigger", "what": "decay", "version": ""}
{"ts": "2026-01-01T00:01:00.000Z", "kind": "shadow", "what": "rejected", "version": "gru-1"}
>>> [event.what for event in read_events(io.StringIO(out.getvalue()))]
['decay', 'rejected']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

import numpy as np

from forecaster.io.records import format_rfc3339
from forecaster.timestamps import rfc3339_ns

KINDS = ("trigger", "run", "shadow")  # a run started; a run's outcome; a shadow's verdict


@dataclass(frozen=True)
class RetrainEvent:
    """``kind`` (one of KINDS) at tick time ``ts`` (epoch ns): ``what`` is the trigger
    (``decay``, ``bootstrap``, ...) or the outcome (``promoted``, ``rejected``,
    ``shadowed``, ``failed``, ``skipped``); ``version`` the candidate's, when there is one."""

    ts: int
    kind: str
    what: str
    version: str = ""

    def to_dict(self) -> dict[str, str]:
        """The event as its JSON line holds it (``ts`` in RFC 3339)."""
        (ts,) = format_rfc3339(np.array([self.ts], np.int64))
        return {"ts": ts, "kind": self.kind, "what": self.what, "version": self.version}

    @property
    def rejection(self) -> bool:
        """A candidate turned down, by the holdout gate or in shadow."""
        return self.kind in ("run", "shadow") and self.what == "rejected"


EventSink = Callable[[RetrainEvent], None]


class EventWriter:
    """An EventSink writing each event as a JSON line to ``file``, flushed at once."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file

    def __call__(self, event: RetrainEvent) -> None:
        self.file.write(json.dumps(event.to_dict()) + "\n")
        self.file.flush()


def read_events(lines: Iterable[str]) -> list[RetrainEvent]:
    """The events of an events file's lines, in order."""
    records = (json.loads(line) for line in lines)
    return [RetrainEvent(rfc3339_ns(r["ts"]), r["kind"], r["what"], r["version"]) for r in records]
