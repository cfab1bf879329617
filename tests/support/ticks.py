"""Ticks for tests: JSON tick messages, tick CSV frames and TickColumns built directly."""

import io
import json

import numpy as np
import pandas as pd

from forecaster.core.ticks import TickColumns


def tick(**fields: object) -> bytes:
    """A valid JSON tick with ``fields`` changed; a field set to ``...`` is left out."""
    base: dict[str, object] = {"series": "AAPL", "ts": "2026-01-05T14:30:00.250Z", "price": 189.5}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def read_csv(text: str) -> pd.DataFrame:
    """A tick CSV's text read as the CSV source reads it."""
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def columns(series: list[str], ts: list[int], price: list[float]) -> TickColumns:
    n = len(series)
    return TickColumns(
        position=np.arange(n, dtype=np.int64),
        series=series,
        ts=np.array(ts, np.int64),
        price=np.array(price, np.float64),
        volume=np.full(n, np.nan),
        partition=np.zeros(n, np.int32),
    )


def random_ticks(n: int, n_series: int, seed: int) -> TickColumns:
    rng = np.random.default_rng(seed)
    series = [f"S{i}" for i in rng.integers(0, n_series, n)]
    price = 50 * np.exp(rng.normal(0, 0.01, n))
    return columns(series, list(range(1, n + 1)), list(price))
