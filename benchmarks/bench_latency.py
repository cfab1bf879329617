"""Benchmark 4, latency: tick sent -> its forecast on the broker, a latency-throughput curve.

For each client ``--client`` names (kafka-python, confluent; both by default),
`forecaster run --kafka-client C` (2-layer LSTM, 32 units) consumes a topic that a feeder
in its own process fills at each ``--fraction`` of that client's maximum rate (the
service's rate in bench_kafka.py's ``--max-json``; by default 10, 25, 50 and 75 %), for
``--seconds`` per point, each point on a broker and service of its own.
Each tick's ``ts`` is its send time in ns, which its forecast echoes. Two latencies per
forecast: to the forecast record's producer timestamp (the service handed it to its
producer; a lower bound of acknowledgement) and to its arrival at a consumer of the
forecasts topic (an upper bound: it includes that consumer's fetch wait). The first
quarter of each point's forecasts (warm-up) is left out. ``--overlap`` sets the service's
``overlap_delivery`` (default: the service's default). With ``--pipe`` bench_kafka.py's
pass-through pipe on the client stands where the service does: the same feeder, broker
and collector with no engine, the floor of what this rig can measure.

    python benchmarks/bench_latency.py --max-json benchmarks/results/kafka.json \\
        --seconds 30 --json benchmarks/results/latency.json
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_kafka
import numpy as np
from common import model_dir, parser, report, wait_for
from kafka_rig import all_assigned, broker, process, service_command, service_env, settings_for

from forecaster.config import Settings
from forecaster.config.settings import KAFKA_CLIENTS, OVERLAPS
from forecaster.io.kafka import producer_configs
from tests.support.broker import create_topics

TOPIC = "ticks"
GROUP = "latency"
FRACTIONS = (0.1, 0.25, 0.5, 0.75)
GOAL_FRACTION, GOAL_P99_MS = 0.5, 50.0  # issue 22: p99 <= 50 ms at half of each maximum
BURST_S = 0.005  # the feeder sends what is due every 5 ms
JOIN_TIMEOUT_S = 300.0
DRAIN_S = 60.0  # the longest a point waits for its last forecasts once fed


def rfc3339(ns: int, prefixes: dict[int, str]) -> str:
    """``ns`` (epoch) as RFC 3339 with nanoseconds; ``prefixes`` caches each second's text.

    >>> rfc3339(1_767_571_200_123_456_789, {})
    '2026-01-05T00:00:00.123456789Z'
    """
    second, fraction = divmod(ns, 10**9)
    if (prefix := prefixes.get(second)) is None:
        prefixes.clear()
        prefix = prefixes[second] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    return f"{prefix}{fraction:09d}Z"


def feed(bootstrap: str, rate: float, seconds: float, series: int) -> int:
    """Send ticks at ``rate`` per second for ``seconds``, ts = send time; returns how many.
    A librdkafka producer with the service's producer settings: kafka-python's would
    cost the feeder more CPU than the service at the higher rates."""
    import confluent_kafka

    from forecaster.io.kafka.confluent import PARTITIONER, confluent_configs

    conf = confluent_configs(producer_configs(settings_for(bootstrap)))
    producer = confluent_kafka.Producer(conf | {"partitioner": PARTITIONER})
    names = [f"S{i:06d}" for i in range(series)]
    keys = [name.encode() for name in names]
    price = 50.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.001, (64, series)), 0))
    prefixes: dict[int, str] = {}
    sent, started = 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        for _ in range(max(int(elapsed * rate) - sent, 0)):
            i = sent % series
            stamp = rfc3339(time.time_ns(), prefixes)
            tick = f'"series": "{names[i]}", "ts": "{stamp}", "price": {price[sent % 64, i]}'
            value = "{" + tick + "}"
            while True:
                try:
                    producer.produce(TOPIC, value.encode(), keys[i])
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        time.sleep(BURST_S)
    producer.flush()
    return sent


def feeder_main(bootstrap: str, rate: float, seconds: float, series: int, out: Any) -> None:
    """The feeder process: ``feed``, then its count on ``out`` (a pipe end)."""
    out.send(feed(bootstrap, rate, seconds, series))


class Collector:
    """A consumer of the forecasts topic from its current end; ``latencies`` of what
    arrived, in ms, in arrival order. It only notes each record while the point runs
    (parsing comes after), to take as little CPU from the service as it can."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        import confluent_kafka

        self._consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap,
                                                   "group.id": f"{GROUP}-collector",
                                                   "fetch.wait.max.ms": 5,
                                                   "enable.auto.commit": False})  # fmt: skip
        partitions = self._consumer.list_topics(topic, 30).topics[topic].partitions
        starts = []
        for partition in partitions:
            tp = confluent_kafka.TopicPartition(topic, partition)
            _, high = self._consumer.get_watermark_offsets(tp, timeout=30)
            starts.append(confluent_kafka.TopicPartition(topic, partition, max(high, 0)))
        self._consumer.assign(starts)
        self.seen: list[tuple[bytes, int, int]] = []  # value, producer timestamp ms, arrival ns

    def take(self, timeout: float) -> None:
        messages = self._consumer.consume(10_000, timeout)
        now_ns = time.time_ns()
        self.seen += [(m.value(), m.timestamp()[1], now_ns) for m in messages if not m.error()]

    def latencies(self) -> tuple[list[float], list[float]]:
        """(to the producer timestamp, to arrival) in ms, in arrival order."""
        stamps = [json.loads(value)["ts"].rstrip("Z") for value, _, _ in self.seen]
        sent_ns = np.array(stamps, "datetime64[ns]").astype(np.int64)
        produced_ms = np.array([produced for _, produced, _ in self.seen], np.float64)
        arrived_ns = np.array([arrived for _, _, arrived in self.seen], np.int64)
        return list(produced_ms - sent_ns / 1e6), list((arrived_ns - sent_ns) / 1e6)

    def close(self) -> None:
        self._consumer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    kept = np.array(values[len(values) // 4 :])
    if not len(kept):
        return {"count": 0}
    p50, p99 = np.percentile(kept, [50, 99])
    return {"count": len(kept), "p50_ms": float(p50), "p99_ms": float(p99),
            "max_ms": float(kept.max())}  # fmt: skip


def point(bootstrap: str, rate: float, seconds: float, series: int) -> dict[str, Any]:
    """One point of the curve: feed at ``rate`` from a process of its own; the latencies."""
    collector = Collector(bootstrap, f"forecasts-{GROUP}")
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    feeder = spawn.Process(
        target=feeder_main, args=(bootstrap, rate, seconds, series, send), daemon=True
    )
    feeder.start()
    sent: int | None = None
    deadline = time.monotonic() + seconds + DRAIN_S
    try:
        while time.monotonic() < deadline:
            collector.take(0.1)
            if sent is None and receive.poll():
                sent = int(receive.recv())
                deadline = time.monotonic() + DRAIN_S
            if sent is not None and len(collector.seen) >= sent:
                break
    finally:
        feeder.join(DRAIN_S)
        collector.close()
    produced, arrived = collector.latencies()
    return {"offered_per_s": rate, "sent": sent or 0, "sent_per_s": (sent or 0) / seconds,
            "forecasts": len(arrived), "to_producer_timestamp": percentiles(produced),
            "to_consumer_arrival": percentiles(arrived)}  # fmt: skip


def max_rate(client: str, explicit: float, max_json: Path | None) -> float:
    if explicit > 0:
        return explicit
    if max_json is None:
        raise SystemExit("give --max-rate or --max-json (a bench_kafka.py result)")
    return float(json.loads(max_json.read_text())["results"][f"{client}/service_msg_per_s"])


def curve(options: Any, client: str, workdir: Path, models: Path) -> list[dict[str, Any]]:
    """Every fraction's point for ``client``, each on a fresh broker and service: Tansu
    keeps every message in memory and slows as it fills, so a point run after others
    would pay for their messages too."""
    top = max_rate(client, options.max_rate, options.max_json)
    return [
        {"client": client, "fraction": fraction, "max_per_s": top,
         **fresh_point(options, client, top * fraction, workdir / f"{client}-{fraction}", models)}
        for fraction in options.fraction or FRACTIONS
    ]  # fmt: skip


def fresh_point(
    options: Any, client: str, rate: float, workdir: Path, models: Path
) -> dict[str, Any]:
    """One point on a broker and service (or pipe) of its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    with broker(workdir) as bootstrap:
        create_topics(bootstrap, {TOPIC: options.partitions, f"forecasts-{GROUP}": 1})
        command = [*service_command(bootstrap, TOPIC, GROUP, models), "--kafka-client", client]
        if options.pipe:
            command = bench_kafka.pipe_command(bootstrap, GROUP, client)
        log = workdir / f"{'pipe' if options.pipe else 'service'}.log"
        with process(
            command, log, service_env() | {"FORECASTER_OVERLAP_DELIVERY": options.overlap}
        ):
            wait_for(all_assigned([log]), JOIN_TIMEOUT_S, "the service's partition assignment")
            return point(bootstrap, rate, options.seconds, options.series)


def table(points: list[dict[str, Any]]) -> str:
    """The curve as one table: to the producer timestamp, and read back."""
    lines = ["client        share  asked/s   sent/s   p50 ms  p99 ms  max ms | read back p50  p99"]
    for p in points:
        t, a = p["to_producer_timestamp"], p["to_consumer_arrival"]
        lines.append(f"{p['client']:<13} {p['fraction']:>4.0%} {p['offered_per_s']:>8,.0f} "
                     f"{p['sent_per_s']:>8,.0f} {_ms(t, 'p50'):>8.1f} {_ms(t, 'p99'):>7.1f} "
                     f"{_ms(t, 'max'):>7.1f} | {_ms(a, 'p50'):>13.1f} "
                     f"{_ms(a, 'p99'):>5.1f}")  # fmt: skip
    return "\n".join(lines)


def _ms(figures: dict[str, float], name: str) -> float:
    return figures.get(f"{name}_ms", np.nan)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--client", action="append", choices=KAFKA_CLIENTS,
                      help="a client to measure (repeatable; default: both)")  # fmt: skip
    args.add_argument("--fraction", action="append", type=float,
                      help="a share of the maximum rate (repeatable; default: 0.1 0.25 0.5 "
                      "0.75)")  # fmt: skip
    args.add_argument("--max-rate", type=float, default=0.0,
                      help="the maximum rate, ticks/s (default: from --max-json)")  # fmt: skip
    args.add_argument("--max-json", type=Path, help="bench_kafka.py JSON with the max rates")
    args.add_argument("--seconds", type=float, default=30.0, help="feeding time per point")
    args.add_argument("--series", type=int, default=1000)
    args.add_argument("--partitions", type=int, default=4)
    args.add_argument("--overlap", choices=OVERLAPS, default=Settings.overlap_delivery,
                      help="the service's overlap_delivery")  # fmt: skip
    args.add_argument("--pipe", action="store_true",
                      help="time bench_kafka.py's pass-through pipe, not the service")  # fmt: skip
    options = args.parse_args(argv)
    workdir = options.workdir / "latency"
    workdir.mkdir(parents=True, exist_ok=True)
    models = model_dir(workdir / "models")
    points = [p for client in options.client or KAFKA_CLIENTS
              for p in curve(options, client, workdir, models)]  # fmt: skip
    results: dict[str, Any] = {"points": points}
    for p in points:
        if p["fraction"] == GOAL_FRACTION:
            results[f"{p['client']}/p99_ms_at_half"] = p["to_producer_timestamp"].get("p99_ms")
            results[f"{p['client']}/p50_ms_at_half"] = p["to_producer_timestamp"].get("p50_ms")
    settings = {"seconds_per_point": options.seconds, "series": options.series,
                "partitions": options.partitions, "model": "lstm 2x32",
                "overlap_delivery": options.overlap,
                "under_test": "pipe" if options.pipe else "service",
                "feeder": "own process, confluent-kafka producer"}  # fmt: skip
    report("latency", settings, results, options.json)
    print(table(points))
    return results


if __name__ == "__main__":
    main()
