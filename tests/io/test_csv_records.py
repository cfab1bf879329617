"""A tick CSV read record by record where pandas' reader stops (forecaster/io/csv_records.py)."""

from pathlib import Path

import pytest

from forecaster.core.ticks import MALFORMED, RAW, RejectReason, parse_csv_frame
from forecaster.io.csv_records import FIELD_LIMIT, records

COLUMNS = ["series", "ts", "price"]


def frames(
    path: Path, skip: int = 0, chunk_rows: int = 2
) -> list[tuple[int, dict[str, list[str]]]]:
    return [(row, frame.to_dict("list")) for row, frame in records(path, COLUMNS, skip, chunk_rows)]


def test_records_come_in_chunks_numbered_by_data_row_after_those_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("series,ts,price\nA,1,1\n\nA,2,2\nA,3,3\nA,4,4\n")  # a blank line: no row
    got = frames(path, skip=1)
    assert [row for row, _ in got] == [1, 3]
    assert [frame["ts"] for _, frame in got] == [["2", "3"], ["4"]]
    assert all(frame[MALFORMED] == [""] * len(frame["ts"]) for _, frame in got)


def test_a_row_of_too_many_fields_is_malformed_and_keeps_its_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('series,ts,price\nA,1,1,extra\n"B,x",2\n')
    ((_, frame),) = frames(path)
    assert frame[MALFORMED] == ["row has 4 fields, the header 3", ""]
    assert frame[RAW] == ["A,1,1,extra", ""]
    assert frame["series"] == ["", "B,x"] and frame["price"] == ["", ""]  # padded, as pandas


def test_a_field_past_the_limit_is_malformed_and_the_next_record_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"series,ts,price\nA,1,{'9' * (FIELD_LIMIT + 1)}\nA,2,2\n")
    ((_, frame),) = frames(path)
    assert frame[MALFORMED][0].startswith("row is not CSV: field larger than field limit")
    assert frame["ts"] == ["", "2"] and frame[MALFORMED][1] == ""


@pytest.mark.parametrize("bad", ["A,2,2,extra", "," * 1000], ids=["a field more", "commas"])
def test_parsing_rejects_a_malformed_row_with_its_record_and_keeps_the_others(
    tmp_path: Path, bad: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"series,ts,price\nA,1,1\n{bad}\nA,3,3\n")
    ((first, frame),) = records(path, COLUMNS, skip=0, chunk_rows=10)
    parsed = parse_csv_frame(frame, first)
    assert parsed.ticks.position.tolist() == [0, 2]
    (reject,) = parsed.rejects
    assert (reject.position, reject.reason, reject.raw) == (
        1,
        RejectReason.CSV_FIELDS,
        bad.encode(),
    )
