"""`forecaster produce`: publish a tick CSV to a Kafka topic, for demos and load tests.

Each CSV row becomes one JSON tick message keyed by its series, in file order (so each
series' ticks keep their order on its partition). A row the tick parser accepts is
rendered from the parsed tick, so the message parses to exactly that tick. A row it
rejects cannot be rendered faithfully; it is still sent, as its best JSON rendering
(non-empty fields; numbers where the text is a number), so that the service
dead-letters it, and such rows are counted in the summary.

    forecaster produce sample_data/ticks.csv --bootstrap-servers localhost:9092 --topic ticks

This module does not import TensorFlow: publishing starts at once.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from forecaster.config import Settings
from forecaster.errors import DeliveryError
from forecaster.io.files import CsvBatch, CsvSource
from forecaster.io.kafka import connect_producer, producer_configs
from forecaster.io.records import format_rfc3339

CHUNK_ROWS = 5000  # rows read, sent and then acknowledged at a time
PROGRESS_EVERY_S = 2.0

Message = tuple[bytes | None, bytes]  # key, value


@dataclass
class Published:
    """What a publish run did."""

    messages: int = 0
    not_ticks: int = 0  # rows sent as best-effort JSON for the service to dead-letter
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / max(self.seconds, 1e-9)

    def summary(self) -> str:
        return (
            f"published {self.messages} messages in {self.seconds:.2f} s "
            f"({self.rate:.0f} msg/s); {self.not_ticks} rows are not valid ticks "
            "and were sent as their best JSON rendering, for the service to dead-letter"
        )


def tick_messages(batch: CsvBatch) -> Iterator[tuple[Message, bool]]:
    """Each row of the batch as a keyed JSON message, in row order, and whether it is a tick."""
    parsed = batch.parse()
    ticks = parsed.ticks
    rendered: dict[int, tuple[Message, bool]] = {}
    stamps = format_rfc3339(ticks.ts)
    for i, position in enumerate(ticks.position.tolist()):
        tick: dict[str, Any] = {"series": ticks.series[i], "ts": stamps[i]}
        tick["price"] = float(ticks.price[i])
        if not math.isnan(ticks.volume[i]):
            tick["volume"] = float(ticks.volume[i])
        rendered[position] = ((ticks.series[i].encode(), _json(tick)), True)
    for reject in parsed.rejects:
        row = batch.frame.iloc[reject.position - batch.first_row]
        tick = best_effort_tick({str(name): str(text) for name, text in row.items()})
        key = tick["series"].encode() if "series" in tick else None
        rendered[reject.position] = ((key, _json(tick)), False)
    for position in sorted(rendered):
        yield rendered[position]


def best_effort_tick(row: dict[str, str]) -> dict[str, Any]:
    """The closest JSON tick to a CSV row: its non-empty fields, read as the CSV rules read them.

    >>> best_effort_tick({"series": "A", "ts": "1700000000000", "price": "abc", "volume": ""})
    {'series': 'A', 'ts': 1700000000000, 'price': 'abc'}
    """
    tick: dict[str, Any] = {}
    for name in ("series", "ts", "price", "volume"):
        text = row.get(name, "")
        if text:
            tick[name] = _field_value(name, text)
    return tick


def _field_value(name: str, text: str) -> Any:
    if name == "series":
        return text
    if name == "ts":
        return int(text) if text.isascii() and text.isdigit() else text
    try:
        return float(text)  # NaN and inf become JSON's NaN and Infinity, which the parser reads
    except ValueError:
        return text


def _json(tick: dict[str, Any]) -> bytes:
    return json.dumps(tick, ensure_ascii=False).encode()


def publish(
    settings: Settings,
    path: Path,
    topic: str,
    rate: float = 0.0,
    progress: Callable[[Published], None] | None = None,
) -> Published:
    """Send every row of ``path`` to ``topic``, at ``rate`` rows per second (0 = flat out).

    Raises DeliveryError if Kafka cannot be reached or did not acknowledge every message.
    """
    try:
        producer = connect_producer(producer_configs(settings))
    except KafkaError as exc:
        raise DeliveryError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    source = CsvSource(path, CHUNK_ROWS, rate)
    timeout_s = settings.delivery_timeout_ms / 1000
    done = Published()
    started = reported = time.monotonic()
    try:
        while (batch := source.poll(PROGRESS_EVERY_S)) is not None:
            _send_acknowledged(producer, topic, tick_messages(batch), done, timeout_s)
            done.seconds = time.monotonic() - started
            if progress is not None and time.monotonic() - reported >= PROGRESS_EVERY_S:
                progress(done)
                reported = time.monotonic()
    finally:
        producer.close()
    return done


def _send_acknowledged(
    producer: Any,
    topic: str,
    messages: Iterator[tuple[Message, bool]],
    done: Published,
    timeout_s: float,
) -> None:
    """Send the messages and wait until the broker acknowledged every one of them."""
    futures = []
    for (key, value), is_tick in messages:
        futures.append(producer.send(topic, value=value, key=key))
        done.not_ticks += not is_tick
    try:
        producer.flush(timeout=timeout_s)
    except KafkaError as exc:
        raise DeliveryError(f"messages not acknowledged in time: {exc}") from exc
    failed = [future for future in futures if not future.succeeded()]
    if failed:
        raise DeliveryError(f"{len(failed)} messages not acknowledged: {failed[0].exception}")
    done.messages += len(futures)
