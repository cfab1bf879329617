"""A tick file for end-to-end runs: a prefix of the sample ticks, then every malformed row."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tests.support.paths import SAMPLE_DATA

SAMPLE = SAMPLE_DATA


@dataclass(frozen=True)
class ReplayInput:
    """The tick file, and what a run must make of it."""

    path: Path
    received: int
    rejected: Counter[str]  # by reason
    series: frozenset[str]  # of the valid ticks

    @property
    def accepted(self) -> int:
        return self.received - sum(self.rejected.values())


def write_replay_input(directory: Path, ticks_prefix: int) -> ReplayInput:
    """The first ``ticks_prefix`` sample ticks, then malformed_ticks.csv (reasons known)."""
    ticks = pd.read_csv(SAMPLE / "ticks.csv", nrows=ticks_prefix, dtype=str, keep_default_na=False)
    malformed = pd.read_csv(SAMPLE / "malformed_ticks.csv", dtype=str, keep_default_na=False)
    ticks["expected_reason"] = ""
    rows = pd.concat([ticks, malformed], ignore_index=True)
    path = directory / "ticks.csv"
    rows.to_csv(path, index=False)
    valid = rows[rows["expected_reason"] == ""]
    return ReplayInput(
        path,
        len(rows),
        Counter(reason for reason in rows["expected_reason"] if reason),
        frozenset(valid["series"]),
    )
