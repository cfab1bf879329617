import json

import numpy as np

from forecaster.engine import ForecastBatch
from forecaster.io.base import DeadLetter
from forecaster.io.records import (
    encode_dead_letter,
    encode_forecast_lines,
    encode_forecasts,
    forecast_records,
    format_rfc3339,
)
from forecaster.ticks import Rejected, RejectReason, TickColumns, parse_messages


def test_rfc3339_keeps_the_precision_each_timestamp_needs() -> None:
    ns = np.array([0, 1_500_000, 1_000, 7], np.int64) + 1_767_571_200 * 10**9
    assert format_rfc3339(ns) == [
        "2026-01-05T00:00:00.000Z",
        "2026-01-05T00:00:00.001500Z",
        "2026-01-05T00:00:00.000001Z",
        "2026-01-05T00:00:00.000000007Z",
    ]


def test_forecast_records_echo_the_tick() -> None:
    ticks = parse_messages(
        [b'{"series":"\\u00e9\\"x","ts":"2026-01-05T01:00:00+01:00","price":2}']
    ).ticks
    batch = ForecastBatch(
        ticks, np.array([2.5]), np.array([False]), "lstm-1", np.zeros(1), np.zeros(1)
    )
    record = json.loads(encode_forecasts(batch)[0])
    assert record == {
        "series": 'é"x',
        "ts": "2026-01-05T00:00:00.000Z",
        "price": 2.0,
        "forecast": 2.5,
        "model_version": "lstm-1",
    }


def test_dead_letters_carry_raw_bytes_reason_and_origin() -> None:
    letter = DeadLetter(
        Rejected(3, b"\xffoops", RejectReason.NOT_UTF8, "bad byte"), {"file": "t.csv", "line": 5}
    )
    record = json.loads(encode_dead_letter(letter))
    assert record["reason"] == "not_utf8" and record["source"] == {"file": "t.csv", "line": 5}
    assert record["raw_base64"] == "/29vcHM=" and "raw" not in record


def test_fast_encoding_is_byte_for_byte_json_dumps() -> None:
    rng = np.random.default_rng(11)
    names = ["plain", 'quo"te', "back\\slash", "tab\tnew\nline", "\u00e9\u4e2d\U0001f600", "\x01"]
    n = 300
    ticks = TickColumns(
        position=np.arange(n),
        series=[names[i] for i in rng.integers(0, len(names), n)],
        ts=rng.integers(0, 4 * 10**18, n),
        price=np.exp(rng.normal(0, 8, n)),
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )
    forecast = ticks.price * np.exp(rng.normal(0, 0.01, n))
    batch = ForecastBatch(ticks, forecast, rng.random(n) < 0.3, "v\u00e9", np.zeros(n), np.zeros(n))
    expected = [json.dumps(r, ensure_ascii=False).encode() for r in forecast_records(batch)]
    assert encode_forecasts(batch) == expected
    assert encode_forecast_lines(batch) == b"".join(line + b"\n" for line in expected)
    whole_ms = batch.ticks.ts // 1_000_000 * 1_000_000  # one unit for every timestamp
    stamps = (whole_ms // 10**6).astype("datetime64[ms]")
    assert format_rfc3339(whole_ms) == [f"{stamp}Z" for stamp in stamps]
    batch.forecast[7] = np.inf  # JSON spells it Infinity, repr() says inf
    assert json.loads(encode_forecasts(batch)[7])["forecast"] == float("inf")
