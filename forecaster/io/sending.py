"""What a batch sends besides its forecasts: its dead letters in source order, with the
records a replay after a restore delivered already left out (exactly once), and a dead
letter for each forecast that cannot be encoded (step 5 of ``forecaster.pipeline``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from forecaster.core.engine import EngineResult, ForecastBatch
from forecaster.core.ticks import ParsedBatch, Rejected, RejectReason
from forecaster.faults import internal_error_detail
from forecaster.io.base import DeadLetter, SourceBatch
from forecaster.io.records import unencodable_rows


def dead_letters_of(
    batch: SourceBatch, parsed: ParsedBatch, result: EngineResult
) -> list[DeadLetter]:
    """Parse rejects and engine rejects of a batch, in source order."""
    positions = parsed.ticks.position
    rejected = list(parsed.rejects)
    for reject in result.rejects:
        position = int(positions[reject.index])
        rejected.append(Rejected(position, parsed.raw_of(position), reject.reason, reject.detail))
    rejected.sort(key=lambda r: r.position)
    return [batch.dead_letter(r) for r in rejected]


def unreplayed(
    batch: SourceBatch,
    replaying: dict[int, int],
    forecasts: ForecastBatch,
    dead_letters: list[DeadLetter],
) -> tuple[ForecastBatch, list[DeadLetter]]:
    """The forecasts and dead letters of a batch's records at or after the committed
    offset of their partition: those before it were delivered already (exactly once)."""

    def delivered(origin: dict[str, Any]) -> bool:
        return bool(origin["offset"] < replaying.get(origin["partition"], -1))

    positions = forecasts.ticks.position.tolist()
    keep = [row for row, position in enumerate(positions)
            if not delivered(batch.origin(position))]  # fmt: skip
    letters = [letter for letter in dead_letters if not delivered(letter.origin)]
    return forecasts.take(np.asarray(keep, np.int64)), letters


def isolate_unencodable(
    batch: SourceBatch,
    parsed: ParsedBatch,
    forecasts: ForecastBatch,
    dead_letters: list[DeadLetter],
) -> tuple[ForecastBatch, list[DeadLetter]]:
    """The forecasts that can be encoded, and a dead letter (internal_error) for each of
    the others, in source order among the batch's other dead letters."""
    failed = unencodable_rows(forecasts)
    positions = forecasts.ticks.position
    letters = list(dead_letters)
    for row, error in failed:
        position = int(positions[row])
        rejected = Rejected(position, parsed.raw_of(position), RejectReason.INTERNAL_ERROR,
                            internal_error_detail(error))  # fmt: skip
        letters.append(batch.dead_letter(rejected))
    letters.sort(key=lambda letter: letter.rejected.position)
    keep = np.setdiff1d(np.arange(len(forecasts)), [row for row, _ in failed])
    return forecasts.take(keep), letters
