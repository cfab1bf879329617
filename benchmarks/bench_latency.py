"""Benchmark 4, latency: tick sent -> its forecast on the broker, at a fixed offered rate.

`forecaster run` (2-layer LSTM, 32 units) consumes a topic that this script feeds at
``--rate`` ticks per second (half the maximum the service measured in bench_kafka.py,
read from ``--max-json``, by default). Each tick's ``ts`` is its send time in ns, which
its forecast echoes. Two latencies per forecast: to the forecast record's producer
timestamp (the service handed it to its producer; a lower bound of acknowledgement) and
to its arrival at a consumer of the forecasts topic (an upper bound: it includes that
consumer's fetch wait). Feeding starts once the service has its partitions, and the
first quarter of forecasts (warm-up) is left out.

    python benchmarks/bench_latency.py --max-json benchmarks/results/kafka.json --seconds 60 \\
        --json benchmarks/results/latency.json
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import model_dir, parser, report, wait_for
from kafka_rig import (
    all_assigned,
    broker,
    process,
    service_command,
    service_env,
    settings_for,
)

from forecaster.io.kafka import construct, producer_configs
from forecaster.io.records import format_rfc3339
from tests.support.broker import create_topics

TOPIC = "ticks"
GROUP = "latency"
BURST_S = 0.01  # the feeder sends a burst every 10 ms
JOIN_TIMEOUT_S = 300.0


def feed(bootstrap: str, rate: float, seconds: float, series: int, stop: threading.Event) -> int:
    """Send ticks at ``rate`` per second for ``seconds``, ts = send time; returns how many."""
    from kafka import KafkaProducer

    producer = construct(KafkaProducer, producer_configs(settings_for(bootstrap)))[0]
    names = [f"S{i:06d}".encode() for i in range(series)]
    price = np.full(series, 50.0)
    rng = np.random.default_rng(0)
    sent, started = 0, time.monotonic()
    while not stop.is_set() and (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(max(due, 0)):
            i = sent % series
            price[i] *= float(np.exp(rng.normal(0, 0.001)))
            stamp = format_rfc3339(np.array([time.time_ns()]))[0]
            value = json.dumps({"series": names[i].decode(), "ts": stamp, "price": price[i]})
            producer.send(TOPIC, value.encode(), names[i])
            sent += 1
        time.sleep(BURST_S)
    producer.flush()
    producer.close()
    return sent


def collect(bootstrap: str, expected: int, timeout: float) -> tuple[list[float], list[float]]:
    """(to producer timestamp, to consumer arrival) latencies in ms, in arrival order."""
    from kafka import KafkaConsumer, TopicPartition

    configs = {"bootstrap_servers": bootstrap, "fetch_max_wait_ms": 5}
    consumer = construct(KafkaConsumer, configs)[0]
    topic = f"forecasts-{GROUP}"
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    produced: list[float] = []
    arrived: list[float] = []
    deadline = time.monotonic() + timeout
    while len(arrived) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            now_ns = time.time_ns()
            for record in records:
                sent_ns = _epoch_ns(json.loads(record.value)["ts"])
                produced.append(record.timestamp - sent_ns / 1e6)
                arrived.append((now_ns - sent_ns) / 1e6)
    consumer.close()
    return produced, arrived


def _epoch_ns(stamp: str) -> int:
    return int(np.datetime64(stamp.rstrip("Z"), "ns").astype(np.int64))


def percentiles(values: list[float]) -> dict[str, float]:
    kept = np.array(values[len(values) // 4 :])
    if not len(kept):
        return {"count": 0}
    p50, p99 = np.percentile(kept, [50, 99])
    return {"count": len(kept), "p50_ms": float(p50), "p99_ms": float(p99),
            "max_ms": float(kept.max())}  # fmt: skip


def offered_rate(explicit: float, max_json: Path | None) -> float:
    if explicit > 0:
        return explicit
    if max_json is None:
        raise SystemExit("give --rate or --max-json (a bench_kafka.py result)")
    results = json.loads(max_json.read_text())["results"]  # the service on kafka-python
    return float(results["kafka-python/service_msg_per_s"]) / 2


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--rate", type=float, default=0.0, help="ticks/s (default: half of max)")
    args.add_argument("--max-json", type=Path, help="bench_kafka.py JSON with the max rate")
    args.add_argument("--seconds", type=float, default=60.0)
    args.add_argument("--series", type=int, default=1000)
    args.add_argument("--partitions", type=int, default=4)
    options = args.parse_args(argv)
    rate = offered_rate(options.rate, options.max_json)
    workdir = options.workdir / "latency"
    workdir.mkdir(parents=True, exist_ok=True)
    models = model_dir(workdir / "models")
    with broker(workdir) as bootstrap:
        create_topics(bootstrap, {TOPIC: options.partitions, f"forecasts-{GROUP}": 1})
        command = service_command(bootstrap, TOPIC, GROUP, models)
        log = workdir / "service.log"
        with process(command, log, service_env()):
            wait_for(all_assigned([log]), JOIN_TIMEOUT_S, "the service's partition assignment")
            stop = threading.Event()
            sent: list[int] = []
            feeder = threading.Thread(
                target=lambda: sent.append(feed(bootstrap, rate, options.seconds,
                                                options.series, stop)))  # fmt: skip
            feeder.start()
            try:
                produced, arrived = collect(
                    bootstrap, int(rate * options.seconds * 0.98), options.seconds + 120
                )
            finally:
                stop.set()
                feeder.join()
    results = {"offered_per_s": rate, "sent": sent[0] if sent else 0, "forecasts": len(arrived),
               "to_producer_timestamp": percentiles(produced),
               "to_consumer_arrival": percentiles(arrived)}  # fmt: skip
    settings = {"rate": rate, "seconds": options.seconds, "series": options.series,
                "partitions": options.partitions, "model": "lstm 2x32"}  # fmt: skip
    report("latency", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
