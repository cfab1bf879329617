"""`forecaster backtest`: replay a tick file through the service once per cell type, then score.

Each replay is ``service.replay`` itself (same engine, same first-model bootstrap and
whatever retraining the replay path runs), started without any saved model so that
no forecast can have seen its future. The forecasts of every replay are kept in the
report directory (``forecasts-<cell>.jsonl``), with what its retraining did
(``events-<cell>.jsonl``: triggers, outcomes, shadow verdicts), next to the scores.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from forecaster.config import Settings
from forecaster.errors import ForecasterError, SourceError
from forecaster.evaluation.backtest.evaluate import evaluate
from forecaster.evaluation.backtest.points import check_oracle, load_points
from forecaster.evaluation.backtest.report import write_report
from forecaster.ops.counting import Totals
from forecaster.params import interval_params
from forecaster.retraining.events import RetrainEvent, read_events
from forecaster.service import replay

ORACLE_FILE = "oracle.csv"  # the generator writes it next to ticks.csv
BAR_WIDTH = 30


def forecasts_file(report: Path, cell: str) -> Path:
    return report / f"forecasts-{cell}.jsonl"


def events_file(report: Path, cell: str) -> Path:
    """The retraining events of a cell's replay (``forecaster.retraining.events``)."""
    return report / f"events-{cell}.jsonl"


def backtest(
    settings: Settings,
    input_path: Path,
    report: Path,
    *,
    cells: Sequence[str] = ("lstm",),
    oracle: Path | None = None,
    series: Sequence[str] = (),
    progress: IO[str] | None = sys.stderr,
) -> dict[str, Any]:
    """Replay ``input_path`` with a fresh model of each cell type and write the report.

    ``oracle`` defaults to an ``oracle.csv`` next to the input, when there is one.
    Returns the metrics document written to ``report/metrics.json``. A backtest that
    fails (on an input without a single point to score, say) removes the report
    directory if it created it, so that no empty or half-written report is left.
    """
    total = _count_rows(input_path)
    if oracle is None and (input_path.parent / ORACLE_FILE).exists():
        oracle = input_path.parent / ORACLE_FILE
    if oracle is not None:
        check_oracle(oracle)
    with _removed_on_failure(report):
        for cell in cells:
            fresh = replace(settings, cell=cell, model_dir="")
            bar = ProgressBar(f"backtest {cell}", total, progress)
            replay(fresh, input_path, forecasts_file(report, cell), str(report / "rejects.jsonl"),
                   bar.update, events_out=events_file(report, cell))  # fmt: skip
            bar.close()
        evaluation = evaluate(
            load_points({cell: forecasts_file(report, cell) for cell in cells}, oracle),
            interval_params(settings),
        )
        if not evaluation.scored.any():
            raise ForecasterError(
                f"nothing to score in {input_path}: no model forecast any of its {total} "
                "ticks after its series' tuning part (the first model trains once "
                f"{settings.bootstrap_steps} warm steps are in)"
            )
        about = {"input": str(input_path), "oracle": str(oracle) if oracle else None}
        events = {cell: _read_events(events_file(report, cell)) for cell in cells}
        return write_report(evaluation, report, about, series, events)


@contextmanager
def _removed_on_failure(folder: Path) -> Iterator[None]:
    """Create ``folder``; if what runs inside fails, remove it again (only if it was new)."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _read_events(path: Path) -> list[RetrainEvent]:
    with path.open(encoding="utf-8") as file:
        return read_events(file)


def _count_rows(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return max(sum(1 for _ in file) - 1, 0)  # without the header
    except OSError as exc:
        raise SourceError(f"cannot read tick file {path}: {exc}") from exc


@dataclass
class ProgressBar:
    """A one-line progress bar redrawn in place: ``label [#####.....] 1200/6000 ticks``;
    none unless ``stream`` is a terminal."""

    label: str
    total: int
    stream: IO[str] | None

    def __post_init__(self) -> None:
        # Redrawn in place, the bar is hundreds of carriage returns in a log file.
        if self.stream is not None and not self.stream.isatty():
            self.stream = None

    def update(self, totals: Totals) -> None:
        if self.stream is None:
            return
        done = min(totals.received, self.total)
        filled = BAR_WIDTH * done // max(self.total, 1)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} ticks")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
