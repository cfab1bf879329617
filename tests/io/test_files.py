import io
import json
from pathlib import Path

import numpy as np
import pytest

from forecaster.core.engine import ForecastBatch
from forecaster.core.ticks import InputLimits, ParsedBatch, Rejected, RejectReason, parse_messages
from forecaster.errors import SourceError
from forecaster.io.base import DeadLetter
from forecaster.io.files import CsvSource, JsonLinesSink
from tests.support.forecasts import forecast_batch


def write(path: Path, rows: list[str], header: str = "series,ts,price") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def drain(source: CsvSource, limit: int = 100) -> list[ParsedBatch]:
    batches: list[ParsedBatch] = []
    while len(batches) < limit and (batch := source.poll(0.0)) is not None:
        batches.append(batch.parse())
    return batches


def test_chunks_keep_row_positions(tmp_path: Path) -> None:
    rows = [f"A,{1000 + i},{1 + i}" for i in range(7)]
    batches = drain(CsvSource(write(tmp_path / "t.csv", rows), max_batch=3))
    assert [b.ticks.position.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]


def test_missing_columns_are_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="lacks column"):
        CsvSource(write(tmp_path / "t.csv", ["A,1"], header="series,ts"), max_batch=10)


def test_loop_continues_each_series_in_time_and_price(tmp_path: Path) -> None:
    rows = ["A,1000,10", "B,1500,1", "A,2000,11", "B,3000,2"]
    source = CsvSource(write(tmp_path / "t.csv", rows), max_batch=4, loop=True)
    passes = [b.ticks for b in drain(source, limit=3)]
    assert [len(t) for t in passes] == [4, 4, 4]
    span_ns = (3000 - 1000) * 10**6 + 10**9
    np.testing.assert_array_equal(passes[1].ts - passes[0].ts, span_ns)
    np.testing.assert_array_equal(passes[2].ts - passes[0].ts, 2 * span_ns)
    np.testing.assert_allclose(passes[1].price, [11, 2, 12.1, 4])
    assert np.all(np.diff(np.concatenate([t.ts[[0, 2]] for t in passes])) > 0)


def test_a_row_that_is_not_utf8_is_a_dead_letter_with_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"series,ts,price\nA,1000,1.5\nA\xff\xfe,2000,2\nA,3000,2.5\n")
    (parsed,) = drain(CsvSource(path, max_batch=10))
    assert parsed.ticks.ts.tolist() == [1000 * 10**6, 3000 * 10**6]
    (reject,) = parsed.rejects
    assert (reject.position, reject.reason, reject.raw) == (
        1,
        RejectReason.NOT_UTF8,
        b"A\xff\xfe,2000,2",
    )


def test_csv_rows_are_held_to_the_source_limits(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ["A,1000,50", "A,2000,5"])
    (parsed,) = drain(CsvSource(path, max_batch=10, limits=InputLimits(max_price=10.0)))
    assert [r.reason for r in parsed.rejects] == [RejectReason.PRICE_OUT_OF_RANGE]


def test_the_sink_keeps_keep_bytes_of_each_dead_letter() -> None:
    raw = b'{"series": "A", "pad": "' + b"x" * 500 + b'"}'
    letter = DeadLetter(Rejected(0, raw, RejectReason.MESSAGE_TOO_LARGE, "big"), {"line": 2})
    out, dead = io.BytesIO(), io.BytesIO()
    JsonLinesSink(out, dead, keep_bytes=16).write(no_forecasts(), [letter])
    record = json.loads(dead.getvalue())
    assert (record["raw"], record["size"], record["truncated"]) == ('{"series": "A", ', 526, True)
    assert out.getvalue() == b""


def no_forecasts() -> ForecastBatch:
    ticks = parse_messages([]).ticks
    return forecast_batch(ticks, np.empty(0), np.empty(0, bool))


def test_the_sink_writes_nothing_when_a_forecast_cannot_be_encoded() -> None:
    ticks = parse_messages([b'{"series": "A", "ts": 1, "price": 2.0}']).ticks
    forecasts = forecast_batch(ticks, np.array([np.nan]), np.array([False]))
    letter = DeadLetter(Rejected(1, b"{", RejectReason.INVALID_JSON, "not JSON"), {"line": 3})
    out, dead = io.BytesIO(), io.BytesIO()
    with pytest.raises(ValueError, match="not finite"):
        JsonLinesSink(out, dead).write(forecasts, [letter])
    assert out.getvalue() == dead.getvalue() == b""


@pytest.mark.parametrize(
    "bad", ["A,1010,5,extra", '"A,1010,5'], ids=["a field more", "a quote left open"]
)
def test_a_row_pandas_cannot_read_costs_no_other_row(tmp_path: Path, bad: str) -> None:
    """pandas' reader stops there and loses its chunk; the file is read on record by record."""
    rows = [f"A,{1000 + i},{1 + i}" for i in range(10)]
    rows[7] = bad
    batches = drain(CsvSource(write(tmp_path / "t.csv", rows), max_batch=3))
    positions = [p for b in batches for p in b.ticks.position.tolist()]
    rejects = [r for b in batches for r in b.rejects]
    if bad.startswith('"'):  # the open quote takes the rest of the file into its row
        assert positions == list(range(7))
        assert [(r.position, r.reason) for r in rejects] == [(7, RejectReason.MISSING_TS)]
        assert rejects[0].raw.startswith(b'"A,1010,5\nA,1008,9')
    else:
        assert positions == [0, 1, 2, 3, 4, 5, 6, 8, 9]
        assert [(r.position, r.reason, r.raw) for r in rejects] == [
            (7, RejectReason.CSV_FIELDS, bad.encode())
        ]
