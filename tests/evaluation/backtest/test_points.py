"""Forecasts lined up with what happened next, and the generator's oracle joined on them
(forecaster/evaluation/backtest/points.py): a hostile oracle file costs only its bad values."""

import json
import math
from pathlib import Path

import pytest

from forecaster.config import Settings
from forecaster.errors import ForecasterError
from forecaster.evaluation.backtest.points import load_points
from forecaster.evaluation.backtest.run import backtest
from tests.support.paths import SAMPLE_TICKS


def forecasts(path: Path, count: int) -> Path:
    lines = [json.dumps({"series": "A", "ts": f"t{i}", "price": 10.0 + i, "forecast": 10.0 + i,
                         "model_version": "m1"}) for i in range(count)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_oracle_value_that_is_no_finite_number_is_left_out_and_the_others_kept(
    tmp_path: Path,
) -> None:
    oracle = tmp_path / "oracle.csv"
    oracle.write_bytes(
        b"series,ts,kind,oracle\n"
        b"A,t0,ar1,1.5\n"
        b"A,t1,ar1,abc\n"
        b"A,t2,ar1,inf\n"
        b"A,t3\n"  # short: no kind, no oracle
        b"A\xff,t4,ar1,2.0\n"  # a key that is not UTF-8 matches no point
        b"A,t5,ar1,2.5,extra,fields\n"
    )
    points = load_points({"lstm": forecasts(tmp_path / "f.jsonl", 6)}, oracle)
    values = points.oracle.tolist()
    assert values[0] == 1.5 and values[5] == 2.5
    assert all(math.isnan(v) for v in values[1:5])
    assert points.kind == ["ar1", "ar1", "ar1", "", "", "ar1"]


@pytest.mark.parametrize("text", ["", "series,ts,kind\nA,t0,ar1\n"], ids=["empty", "no oracle"])
def test_an_oracle_file_without_its_columns_is_refused_by_name(tmp_path: Path, text: str) -> None:
    oracle = tmp_path / "oracle.csv"
    oracle.write_text(text)
    with pytest.raises(ForecasterError, match="header lacks column"):
        load_points({"lstm": forecasts(tmp_path / "f.jsonl", 2)}, oracle)


def test_a_backtest_refuses_a_bad_oracle_before_its_replays(tmp_path: Path) -> None:
    oracle = tmp_path / "oracle.csv"
    oracle.write_text("series,price\n")
    report = tmp_path / "report"
    with pytest.raises(ForecasterError, match="lacks column"):
        backtest(Settings(), SAMPLE_TICKS, report, oracle=oracle)
    assert not report.exists()
