from pathlib import Path

import numpy as np
import pytest

from forecaster.errors import SourceError
from forecaster.io.files import CsvSource


def write(path: Path, rows: list[str], header: str = "series,ts,price") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def drain(source: CsvSource, limit: int = 100) -> list:  # type: ignore[type-arg]
    batches = []
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
