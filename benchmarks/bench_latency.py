"""Benchmark 4, latency: tick sent -> its forecast on the broker, a latency-throughput curve.

For each client ``--client`` names (kafka-python, confluent; both by default),
`forecaster run --kafka-client C` (2-layer LSTM, 32 units) consumes a topic that a feeder
in its own process fills at each ``--fraction`` of that client's maximum rate (the
service's rate in bench_kafka.py's ``--max-json``; by default 10, 25, 50 and 75 %), for
``--seconds`` per point, each point on a broker and service of its own.
Each tick's ``ts`` is its send time in ns, which its forecast echoes. The latency of a
forecast is to its record's producer timestamp (the service handed it to its producer; a
lower bound of acknowledgement); the first quarter of each point's forecasts (warm-up) is
left out. The collector reads the forecasts once the feeder is done (``--read-back
after``: it then takes no CPU while the rest is timed) or as they come (``live``, which
also gives each forecast's arrival: an upper bound, with the collector's own fetch).
Per process, the point reports the cores it ran on and how long its threads waited for a
CPU (Linux's /proc stat and schedstat), and how long any task on the machine did (PSI):
on 2 cores the feeder, the broker and the collector compete with what is timed.
``--overlap`` sets the service's ``overlap_delivery`` (default: the service's default).
With ``--pipe`` bench_kafka.py's pass-through pipe on the client stands where the service
does; with ``--floor`` nothing does: the collector reads the ticks live, and their arrival
is the latency of the feeder, the broker and a fetch alone.

    python benchmarks/bench_latency.py --max-json benchmarks/results/kafka.json \\
        --seconds 30 --json benchmarks/results/latency.json
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_kafka
import numpy as np
from common import cpu_pressure, model_dir, parser, report, wait_for
from kafka_rig import (
    Scheduled,
    Snapshot,
    all_assigned,
    broker,
    process,
    scheduled,
    service_command,
    service_env,
    settings_for,
)

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
READ_BACK = ("after", "live")
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


def feed(
    bootstrap: str, rate: float, seconds: float, series: int, started: Callable[[], None]
) -> Fed:
    """Send ticks at ``rate`` per second for ``seconds``, ts = send time; ``started()`` is
    called as the first is due. A librdkafka producer with the service's producer
    settings: kafka-python's would cost the feeder more CPU than the service at the higher
    rates."""
    import confluent_kafka

    from forecaster.io.kafka.confluent import PARTITIONER, confluent_configs

    conf = confluent_configs(producer_configs(settings_for(bootstrap)))
    producer = confluent_kafka.Producer(conf | {"partitioner": PARTITIONER})
    names = [f"S{i:06d}" for i in range(series)]
    keys = [name.encode() for name in names]
    price = 50.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.001, (64, series)), 0))
    prefixes: dict[int, str] = {}
    started()
    sent, before, opened = 0, scheduled(os.getpid()), time.monotonic()
    while (elapsed := time.monotonic() - opened) < seconds:
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
    return Fed(sent, scheduled(os.getpid()) - before, time.monotonic() - opened)


class Fed(NamedTuple):
    """What a feeder sent, how its threads were scheduled meanwhile, and for how long."""

    sent: int
    scheduled: Scheduled
    seconds: float


def feeder_main(bootstrap: str, rate: float, seconds: float, series: int, out: Any) -> None:
    """The feeder process: ``None`` on ``out`` (a pipe end) as it starts sending, then what
    ``feed`` returns."""
    out.send(feed(bootstrap, rate, seconds, series, lambda: out.send(None)))


class Collector:
    """A consumer of ``topic`` from its current end; ``latencies`` of what
    arrived, in ms, in arrival order. It only notes each record while the point runs
    (parsing comes after), to take as little CPU from the service as it can."""

    def __init__(self, bootstrap: str, topic: str, fetch_wait_ms: int) -> None:
        import confluent_kafka

        self._consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap,
                                                   "group.id": f"{GROUP}-collector",
                                                   "fetch.wait.max.ms": fetch_wait_ms,
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
        """Wait up to ``timeout`` for a record, then take what is fetched already
        (``consume`` alone would wait for a whole batch or the timeout)."""
        if (first := self._consumer.poll(timeout)) is None:
            return
        messages = [first, *self._consumer.consume(10_000, 0)]
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


def point(bootstrap: str, rate: float, seconds: float, series: int,
          others: dict[str, int], collector: Collector, live: bool) -> dict[str, Any]:  # fmt: skip
    """One point of the curve: feed at ``rate`` from a process of its own; the latencies,
    and how each process was scheduled while the feeder sent (``Shares``): the feeder,
    the collector (this process) and ``others`` (name: pid). The collector reads as
    records come if ``live``, else once the feeder is done (it then takes no CPU
    from the rest while they are timed, and its arrival latencies mean nothing)."""
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    feeder = spawn.Process(
        target=feeder_main, args=(bootstrap, rate, seconds, series, send), daemon=True
    )
    feeder.start()
    shares = Shares(others | {"collector": os.getpid()})
    fed: Fed | None = None
    machine: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + JOIN_TIMEOUT_S + seconds
    try:
        while time.monotonic() < deadline:
            if live or fed is not None:
                collector.take(0.1)
            if fed is None and receive.poll(0 if live else 0.1):
                if (message := receive.recv()) is None:
                    shares.open()
                    continue
                fed, deadline = Fed(*message), time.monotonic() + DRAIN_S
                machine = shares.close() | {"feeder": Shares.of(fed.scheduled, fed.seconds)}
            if fed is not None and len(collector.seen) >= fed.sent:
                break
    finally:
        feeder.join(DRAIN_S)
    produced, arrived = collector.latencies()
    sent = fed.sent if fed else 0
    return {"offered_per_s": rate, "sent": sent, "sent_per_s": sent / seconds,
            "forecasts": len(arrived), "to_producer_timestamp": percentiles(produced),
            "to_consumer_arrival": percentiles(arrived) if live else {},
            "scheduling": machine}  # fmt: skip


class Shares:
    """How processes were scheduled from ``open`` to ``close``, as shares of that wall time:
    per process (name: pid) the cores its threads ran on, the thread-seconds they waited
    runnable for a CPU and its main thread's wait; for the machine, the share of the time
    any task waited for a CPU (PSI "some"). A wait is time the process was ready to work
    and the two cores were taken."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._opened: tuple[float, float, dict[str, Snapshot]] | None = None

    def open(self) -> None:
        self._opened = time.monotonic(), _pressure_s(), self._now()

    def close(self) -> dict[str, dict[str, float]]:
        if self._opened is None:
            return {}
        since, pressure, before = self._opened
        wall = time.monotonic() - since
        shares = {name: self.of(now - before[name], wall) for name, now in self._now().items()}
        return shares | {"machine": {"waited": (_pressure_s() - pressure) / wall}}

    @staticmethod
    def of(used: Scheduled, wall: float) -> dict[str, float]:
        return {"cores": used.ran_s / wall, "waited": used.waited_ns / 1e9 / wall,
                "main_waited": used.main_waited_ns / 1e9 / wall}  # fmt: skip

    def _now(self) -> dict[str, Snapshot]:
        return {name: scheduled(pid) for name, pid in self.pids.items()}


def _pressure_s() -> float:
    return cpu_pressure().get("total", np.nan) / 1e6


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
    """One point on a broker and service (or pipe, or with ``--floor`` nothing) of its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    with broker(workdir) as tansu:
        bootstrap = tansu.bootstrap
        create_topics(bootstrap, {TOPIC: options.partitions, f"forecasts-{GROUP}": 1})
        if options.floor:  # the collector reads the ticks: no client in between
            with closing(Collector(bootstrap, TOPIC, options.collector_fetch_wait_ms)) as ticks:
                return point(bootstrap, rate, options.seconds, options.series,
                             {"broker": tansu.pid}, ticks, live=True)  # fmt: skip
        command = [*service_command(bootstrap, TOPIC, GROUP, models), "--kafka-client", client]
        if options.pipe:
            command = bench_kafka.pipe_command(bootstrap, GROUP, client)
        log = workdir / f"{'pipe' if options.pipe else 'service'}.log"
        with process(
            command, log, service_env() | {"FORECASTER_OVERLAP_DELIVERY": options.overlap}
        ) as under_test:
            wait_for(all_assigned([log]), JOIN_TIMEOUT_S, "the service's partition assignment")
            pids = {"under test": under_test.pid, "broker": tansu.pid}
            topic, wait_ms = f"forecasts-{GROUP}", options.collector_fetch_wait_ms
            with closing(Collector(bootstrap, topic, wait_ms)) as forecasts:
                return point(bootstrap, rate, options.seconds, options.series, pids, forecasts,
                             live=options.read_back == "live")  # fmt: skip


def table(points: list[dict[str, Any]]) -> str:
    """The curve as one table: to the producer timestamp, and read back."""
    lines = ["client        share  asked/s   sent/s   p50 ms  p99 ms  max ms | read back p50  p99"]
    for p in points:
        t, a = p["to_producer_timestamp"], p["to_consumer_arrival"]
        lines.append(f"{p['client']:<13} {p['fraction']:>4.0%} {p['offered_per_s']:>8,.0f} "
                     f"{p['sent_per_s']:>8,.0f} {_ms(t, 'p50'):>8.1f} {_ms(t, 'p99'):>7.1f} "
                     f"{_ms(t, 'max'):>7.1f} | {_ms(a, 'p50'):>13.1f} "
                     f"{_ms(a, 'p99'):>5.1f}")  # fmt: skip
    lines.append("while fed, share of the time: ran (cores) / waited for a CPU (thread-s per s)")
    lines.append("                   under test  main thread  broker      feeder      collector   "
                 "machine")  # fmt: skip
    for p in points:
        shares = p["scheduling"]
        cells = [f"{_share(shares, name, 'cores'):.2f}/{_share(shares, name, 'waited'):.2f}"
                 for name in SCHEDULED]  # fmt: skip
        main = f"{_share(shares, 'under test', 'main_waited'):.2f}"
        machine = f"{_share(shares, 'machine', 'waited'):.2f}"
        lines.append(f"{p['client']:<13} {p['fraction']:>4.0%} {cells[0]:>11} {main:>12} "
                     + "".join(f"{cell:>12}" for cell in cells[1:]) + f"{machine:>9}")  # fmt: skip
    return "\n".join(lines)


def _share(shares: dict[str, dict[str, float]], name: str, what: str) -> float:
    return shares.get(name, {}).get(what, np.nan)


SCHEDULED = ("under test", "broker", "feeder", "collector")


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
    args.add_argument("--read-back", choices=READ_BACK, default=READ_BACK[0],
                      help="when the collector reads the forecasts: once the feeder is done "
                      "(it takes no CPU while the others are timed), or live (it also "
                      "times their arrival)")  # fmt: skip
    args.add_argument(
        "--collector-fetch-wait-ms",
        type=int,
        default=Settings.fetch_max_wait_ms,
        help="the collector's fetch.wait.max.ms (default: the service's)",
    )
    under_test = args.add_mutually_exclusive_group()
    under_test.add_argument(
        "--pipe",
        action="store_true",
        help="time bench_kafka.py's pass-through pipe, not the service",
    )
    under_test.add_argument("--floor", action="store_true",
                            help="no client in between: the collector reads the ticks live "
                            "(the rig's own latency, in the read-back columns)")  # fmt: skip
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
                "under_test": "pipe" if options.pipe else "none" if options.floor
                else "service",
                "read_back": options.read_back,
                "feeder": "own process, confluent-kafka producer"}  # fmt: skip
    report("latency", settings, results, options.json)
    print(table(points))
    return results


if __name__ == "__main__":
    main()
