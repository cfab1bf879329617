"""Benchmark: JSON on the hot path, side by side: decoding tick messages and encoding
forecasts with the standard library, orjson and msgspec (if installed), per record.

Decoding: a library's ``loads`` alone, and the whole ``parse_messages`` (fields, rules,
columns) with the orjson fast path (``_decoded``) against the standard library alone
(``_decoded_exactly``). Encoding: ``encode_forecasts`` with orjson writing the number
columns (today's) against ``repr`` per number (before #22), and each library encoding
ready-made dicts, whose output is compact JSON, not the service's bytes.

    python benchmarks/bench_json.py --records 20000 --json benchmarks/results/json.json
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import orjson
from common import parser, report

from forecaster.core.engine import ForecastBatch
from forecaster.core.ticks import json_messages, parse_messages
from forecaster.io import records
from tests.support.forecasts import forecast_batch


def ns_per_record(work: Callable[[], Any], count: int, repeats: int) -> float:
    """The fastest of ``repeats`` runs, per record, in nanoseconds (the least disturbed)."""
    return min(timeit.repeat(work, number=1, repeat=repeats)) / count * 1e9


def tick_messages(count: int, series: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    prices = np.exp(rng.normal(4, 2, count))
    return [json.dumps({"series": f"SER-{i % series:05d}", "ts": 1_767_225_600_000 + i,
                        "price": float(prices[i]), "volume": int(i % 97)}).encode()
            for i in range(count)]  # fmt: skip


def repr_encoding(batch: ForecastBatch) -> list[bytes]:
    """``encode_forecasts`` as it was before #22: ``repr`` of each number."""
    original = records.float_texts
    records.float_texts = lambda column: [repr(x) for x in column.tolist()]
    try:
        return records.encode_forecasts(batch)
    finally:
        records.float_texts = original


def decoding(messages: list[bytes], repeats: int) -> dict[str, float]:
    count = len(messages)
    figures = {
        "json.loads": ns_per_record(lambda: [json.loads(m) for m in messages], count, repeats),
        "orjson.loads": ns_per_record(lambda: [orjson.loads(m) for m in messages], count, repeats),
        "parse_messages, orjson": ns_per_record(lambda: parse_messages(messages), count, repeats),
    }
    exact, fast = json_messages._decoded_exactly, json_messages._decoded
    json_messages._decoded = exact  # type: ignore[assignment]
    try:
        figures["parse_messages, json"] = ns_per_record(
            lambda: parse_messages(messages), count, repeats
        )
    finally:
        json_messages._decoded = fast  # type: ignore[assignment]
    if msgspec := _msgspec():
        decoder = msgspec.json.Decoder()
        figures["msgspec decode"] = ns_per_record(
            lambda: [decoder.decode(m) for m in messages], count, repeats
        )
    return figures


def encoding(messages: list[bytes], repeats: int) -> dict[str, float]:
    ticks = parse_messages(messages).ticks
    count = len(ticks)
    forecast = ticks.price * 1.000123
    batch = forecast_batch(ticks, forecast, np.zeros(count, bool), "lstm-0123456789ab")
    assert repr_encoding(batch) == records.encode_forecasts(batch)  # the same bytes
    dicts = records.forecast_records(batch)
    figures = {
        "encode_forecasts, orjson numbers": ns_per_record(
            lambda: records.encode_forecasts(batch), count, repeats
        ),
        "encode_forecasts, repr numbers": ns_per_record(
            lambda: repr_encoding(batch), count, repeats
        ),
        "forecast dicts (not encoded)": ns_per_record(
            lambda: records.forecast_records(batch), count, repeats
        ),
        "orjson.dumps of dicts (compact)": ns_per_record(
            lambda: [orjson.dumps(d) for d in dicts], count, repeats
        ),
    }
    if msgspec := _msgspec():
        encoder = msgspec.json.Encoder()
        figures["msgspec encode of dicts (compact)"] = ns_per_record(
            lambda: [encoder.encode(d) for d in dicts], count, repeats
        )
    return figures


def _msgspec() -> Any:
    try:
        import msgspec
    except ImportError:
        return None
    return msgspec


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--records", type=int, default=20000)
    args.add_argument("--series", type=int, default=1000)
    options = args.parse_args(argv)
    messages = tick_messages(options.records, options.series)
    results = {
        "decode_ns_per_record": decoding(messages, options.repeats),
        "encode_ns_per_record": encoding(messages, options.repeats),
    }
    versions = {"orjson": orjson.__version__,
                "msgspec": getattr(_msgspec(), "__version__", "not installed")}  # fmt: skip
    settings = {"records": options.records, "series": options.series,
                "repeats": options.repeats, "versions": versions}  # fmt: skip
    report("json", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
