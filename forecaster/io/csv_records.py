"""A tick CSV read record by record, for the part of a file pandas' reader cannot take.

pandas reads a tick CSV a chunk at a time, fast, but stops at the first row with more
fields than the header, or at a quote left open to the end of the file, and the whole
chunk around it is lost with it. From there on the file is read with the ``csv``
module, record by record, into the same frames (every value text): a record with more
fields than the header, or one the reader refuses (a field past ``FIELD_LIMIT``
characters), becomes a row whose ``MALFORMED`` column says why and whose ``RAW`` column
keeps the record, so that parsing rejects it as a dead letter (``csv_fields``) and every
other row is a tick as before. A record with fewer fields is padded with empty values,
as pandas pads it, and blank lines are skipped, as pandas skips them.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
>>> _ = path.write_text("series,ts,price\\nA,1000,1.5\\nA,2000,1.6,extra\\nA,3000\\n")
>>> [(row, frame.to_dict("list")) for row, frame in records(path, ["series", "ts", "price"],
...                                                          skip=1, chunk_rows=5)]
... # doctest: +NORMALIZE_WHITESPACE
[(1, {'series': ['', 'A'], 'ts': ['', '3000'], 'price': ['', ''],
      '_malformed': ['row has 4 fields, the header 3', ''], '_raw': ['A,2000,1.6,extra', '']})]
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from forecaster.core.ticks import MALFORMED, RAW, csv_text

FIELD_LIMIT = 16 * 2**20  # characters; a record with a longer field is malformed

Chunk = tuple[int, pd.DataFrame]  # (data row of the first record in the file, its rows)


def records(path: Path, columns: list[str], skip: int, chunk_rows: int) -> Iterator[Chunk]:
    """The data records of ``path`` after its first ``skip``, in frames of ``chunk_rows``
    rows with ``columns`` (the header's, as pandas names them), ``MALFORMED`` and ``RAW``."""
    csv.field_size_limit(FIELD_LIMIT)
    rows: list[list[str]] = []
    row = skip
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as file:
        reader = _data_records(file, len(columns))
        for _ in zip(range(skip), reader, strict=False):
            pass
        for record in reader:
            rows.append(record)
            if len(rows) == chunk_rows:
                yield row, _frame(rows, columns)
                row, rows = row + len(rows), []
    if rows:
        yield row, _frame(rows, columns)


def _data_records(file: io.TextIOBase, width: int) -> Iterator[list[str]]:
    """Each non-blank record after the header as ``width`` values, then why it is malformed
    ("" if it is not) and the record as text."""
    reader = csv.reader(file)
    next(reader, None)  # the header
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader goes on at the next line
            yield [""] * width + [f"row is not CSV: {exc}", ""]
            continue
        if not fields:
            continue
        if len(fields) > width:
            detail = f"row has {len(fields)} fields, the header {width}"
            yield [""] * width + [detail, csv_text(fields)]
        else:
            yield fields + [""] * (width - len(fields)) + ["", ""]


def _frame(rows: list[list[str]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*columns, MALFORMED, RAW], dtype=str)
