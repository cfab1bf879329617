"""File transport: replay a tick CSV (optionally paced and looped), write JSON lines.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
>>> _ = path.write_text("series,ts,price\\nA,1000,1.5\\nA,2000,oops\\n")
>>> source = CsvSource(path, max_batch=10)
>>> parsed = source.poll(0.0).parse()
>>> len(parsed.ticks), parsed.rejects[0].reason.value
(1, 'price_type')
>>> source.poll(0.0) is None
True
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from forecaster.core.engine import ForecastBatch
from forecaster.core.ticks import (
    DEFAULT_LIMITS,
    InputLimits,
    ParsedBatch,
    Rejected,
    RejectReason,
    csv_row,
    parse_csv_frame,
)
from forecaster.errors import SourceError
from forecaster.io.base import DeadLetter, SourceBatch
from forecaster.io.csv_records import records
from forecaster.io.records import encode_dead_letter, encode_forecast_lines

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("series", "ts", "price")
PACING_INTERVAL_S = 0.05

Chunk = tuple[int, pd.DataFrame]  # (row of the first tick in the file, its rows)


@dataclass
class CsvBatch:
    """A chunk of CSV rows; ``first_row`` is the data row number (0-based) of its first row."""

    frame: pd.DataFrame
    first_row: int
    path: Path
    looper: _Looper | None = None
    limits: InputLimits = DEFAULT_LIMITS

    def parse(self) -> ParsedBatch:
        parsed = parse_csv_frame(self.frame, self.first_row, self.limits)
        if self.looper is not None:
            self.looper.on_parsed(parsed)
        return parsed

    def origin(self, position: int) -> dict[str, Any]:
        return {"file": str(self.path), "line": position + 2}  # 1-based, after the header

    def dead_letter(self, rejected: Rejected) -> DeadLetter:
        return DeadLetter(rejected, self.origin(rejected.position))

    def split(self) -> list[SourceBatch]:
        return [
            replace(self, frame=self.frame.iloc[row : row + 1], first_row=self.first_row + row)
            for row in range(len(self.frame))
        ]

    def unprocessable(self, detail: str) -> DeadLetter:
        raw = csv_row(self.frame, 0)
        return self.dead_letter(Rejected(self.first_row, raw, RejectReason.INTERNAL_ERROR, detail))

    def next_offsets(self) -> dict[int, int]:
        """A file is one partition, 0, whose offsets are data row numbers."""
        return {0: self.first_row + len(self.frame)} if len(self.frame) else {}

    def without(self, partitions: Collection[int]) -> CsvBatch:
        return replace(self, frame=self.frame.iloc[:0]) if 0 in partitions else self


@dataclass
class _Looper:
    """Learns the file on its first pass; moves each later pass after the previous one.

    Pass k is shifted by k times the file's time span (plus a second) and each series'
    prices are scaled by (last / first) ** k, so every pass starts where the last ended.
    """

    passes: int = 0
    first_price: dict[str, float] = field(default_factory=dict)
    last_price: dict[str, float] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int = 0

    def on_parsed(self, parsed: ParsedBatch) -> None:
        ticks = parsed.ticks
        if not len(ticks):
            return
        if self.passes == 0:
            for series, price in zip(ticks.series, ticks.price.tolist(), strict=True):
                self.first_price.setdefault(series, price)
                self.last_price[series] = price
            self.first_ts = min(self.first_ts or int(ticks.ts.min()), int(ticks.ts.min()))
            self.last_ts = max(self.last_ts, int(ticks.ts.max()))
            return
        span = self.last_ts - (self.first_ts or 0) + 1_000_000_000
        ticks.ts += self.passes * span
        growth = np.fromiter(
            (self.last_price.get(s, 1.0) / self.first_price.get(s, 1.0) for s in ticks.series),
            np.float64,
            len(ticks),
        )
        ticks.price *= growth**self.passes


class CsvSource:
    """Reads a tick CSV in chunks of at most ``max_batch`` rows.

    ``rate`` > 0 paces the replay at that many ticks per second; ``loop`` replays the
    file again when it ends, each pass shifted after the previous one in time and its
    prices scaled to continue where each series left off, so a demo runs for ever. A row
    with bytes that are not UTF-8 is a dead letter (not_utf8) that keeps those bytes. Where
    pandas' reader stops (a row with more fields than the header, a quote left open), the
    file is read on record by record (``forecaster.io.csv_records``): such a row is a dead
    letter (csv_fields), and every other row is still a tick.
    """

    def __init__(
        self,
        path: Path,
        max_batch: int,
        rate: float = 0.0,
        loop: bool = False,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self.path = Path(path)
        self.max_batch = max_batch
        self.rate = rate
        self.loop = loop
        self.limits = limits
        self._columns = self._check_header()
        self._chunks = self._read()
        self._rest: Chunk | None = None  # the unread part of a chunk a paced poll cut
        self._again: list[CsvBatch] = []  # batches to hand over again, the last rewound first
        self._started = time.monotonic()
        self._emitted = 0
        self._looper = _Looper() if loop else None

    def _check_header(self) -> list[str]:
        try:
            header = pd.read_csv(self.path, nrows=0).columns
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read tick file {self.path}: {exc}") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise SourceError(f"{self.path}: header lacks column(s) {missing}")
        return [str(name) for name in header]

    def _read(self) -> Iterator[Chunk]:
        row = 0
        # surrogateescape: a byte that is not UTF-8 fails its row (parse_csv_frame), not the file
        reader = pd.read_csv(
            self.path,
            dtype=str,
            keep_default_na=False,
            encoding_errors="surrogateescape",
            chunksize=self.max_batch,
        )
        try:
            for frame in reader:
                yield row, frame.reset_index(drop=True)
                row += len(frame)
        except pd.errors.ParserError as exc:  # no longer rows: a field count, an open quote
            log.warning("%s from data row %d on is read record by record: %s",
                        self.path, row, exc)  # fmt: skip
            yield from records(self.path, self._columns, skip=row, chunk_rows=self.max_batch)

    def poll(self, timeout: float) -> CsvBatch | None:
        if self._again:
            return self._again.pop()
        if self.rate > 0 and not self._wait_for_due_tick(timeout):
            return CsvBatch(pd.DataFrame(columns=list(REQUIRED_COLUMNS)), 0, self.path)
        first_row, frame = self._next_frame()
        if frame is None:
            return None
        self._emitted += len(frame)
        return CsvBatch(frame, first_row, self.path, self._looper, self.limits)

    def _wait_for_due_tick(self, timeout: float) -> bool:
        wait = (self._emitted + 1) / self.rate - (time.monotonic() - self._started)
        if wait > timeout:
            time.sleep(max(timeout, 0.0))
            return False
        time.sleep(max(wait, 0.0))
        return True

    def _next_frame(self) -> tuple[int, pd.DataFrame | None]:
        limit = self.max_batch
        if self.rate > 0:
            due = int((time.monotonic() - self._started) * self.rate) - self._emitted
            limit = max(1, min(limit, due, int(self.rate * PACING_INTERVAL_S) + 1))
        if (chunk := self._next_chunk()) is not None:
            first_row, frame = chunk
            if len(frame) > limit:
                self._rest = (first_row + limit, frame.iloc[limit:].reset_index(drop=True))
            return first_row, frame.iloc[:limit]
        if self._looper is not None and self._emitted > 0:
            self._looper.passes += 1
            self._chunks = self._read()
            return self._next_frame()
        return 0, None

    def _next_chunk(self) -> Chunk | None:
        if self._rest is not None:
            chunk, self._rest = self._rest, None
            return chunk
        return next(self._chunks, None)

    def connected(self) -> bool:
        return True

    def commit(self, batch: CsvBatch) -> None:
        """Nothing to record: a file is read again from its start."""

    def rewind(self, batch: CsvBatch) -> None:
        self._again.append(batch)

    def seek(self, positions: Mapping[int, int | None]) -> None:
        """A file is read in order: there is nothing to seek (no checkpoints restore it)."""
        if positions:
            raise ValueError(f"a tick file cannot seek: {dict(positions)}")

    def close(self) -> None:
        self._chunks = iter(())
        self._rest = None
        self._again.clear()


def open_output(target: str) -> IO[bytes]:
    """A binary stream for ``-`` (stdout), ``stderr`` or a file path (created, truncated)."""
    if target == "-":
        return sys.stdout.buffer
    if target == "stderr":
        return sys.stderr.buffer
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


class JsonLinesSink:
    """Forecasts and dead letters as JSON lines, each to its own stream; a dead letter keeps
    at most ``keep_bytes`` of its message (see :func:`~forecaster.io.records.kept_bytes`).
    """

    def __init__(
        self,
        forecasts: IO[bytes],
        dead_letters: IO[bytes],
        keep_bytes: int = DEFAULT_LIMITS.max_message_bytes,
    ) -> None:
        self.forecasts = forecasts
        self.dead_letters = dead_letters
        self.keep_bytes = keep_bytes

    def write(self, forecasts: ForecastBatch, dead_letters: list[DeadLetter]) -> None:
        """Write both, or raise before writing anything if a forecast cannot be encoded."""
        lines = encode_forecast_lines(forecasts)
        letters = b"".join(encode_dead_letter(d, self.keep_bytes) + b"\n" for d in dead_letters)
        if lines:
            self.forecasts.write(lines)
        if letters:
            self.dead_letters.write(letters)

    def flush(self) -> None:
        self.forecasts.flush()
        self.dead_letters.flush()

    def close(self) -> None:
        self.flush()
        for stream in (self.forecasts, self.dead_letters):
            if stream not in (sys.stdout.buffer, sys.stderr.buffer):
                stream.close()
