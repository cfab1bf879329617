"""Benchmark 1, Kafka ceiling ratio: the service end to end against a bare pass-through pipe.

On one Tansu broker, the same input topic is drained, on each client ``--client`` names
(kafka-python, confluent; both by default), by (a) `forecaster run --kafka-client C` with
a 2-layer LSTM (32 units), one process (and two in one group with ``--two-processes``),
and (b) a bare pipe on the same client with the same client settings (consume, decode
the JSON, encode a forecast-sized JSON message, produce, wait for the acknowledgements,
commit). Each run is a fresh consumer group; rates come from the groups' committed
offsets. Each repeat runs them all on a fresh broker (Tansu keeps every message and slows
as it fills), and the ratios are the medians of each repeat's side-by-side ratios.

    python benchmarks/bench_kafka.py --ticks 200000 --series 1000 \\
        --json benchmarks/results/kafka.json

With ``--exactly-once`` it compares instead `forecaster run` at least once with `forecaster
run` exactly once (``processing_guarantee = "exactly_once"``, changelog state store), one
process each, side by side on each fresh broker:

    python benchmarks/bench_kafka.py --exactly-once --ticks 40000 --series 1000 \\
        --json benchmarks/results/kafka-eos.json
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    child_env,
    median,
    model_dir,
    parser,
    ratio,
    report,
    tick_file,
)
from kafka_rig import (
    all_assigned,
    broker,
    consumption_rate,
    cpu_seconds,
    process,
    publish_ticks,
    service_command,
    service_env,
    settings_for,
)

from forecaster.config.settings import KAFKA_CLIENTS

TOPIC = "ticks"
CLIENTS = KAFKA_CLIENTS
EXACTLY_ONCE_ENV = {"FORECASTER_PROCESSING_GUARANTEE": "exactly_once",
                    "FORECASTER_STATE_STORE": "kafka"}  # fmt: skip


def forecast_of(value: bytes) -> bytes:
    """The pipe's stand-in for the model: a forecast-sized JSON message of a tick."""
    tick = json.loads(value)
    forecast = {
        "series": tick["series"], "ts": tick["ts"], "price": tick["price"],
        "forecast": tick["price"] * 1.0001, "model_version": "lstm-pipe",
    }  # fmt: skip
    return json.dumps(forecast).encode()


def pipe(bootstrap: str, topic: str, group: str, client: str) -> None:
    """The ceiling: what a Python service does around its model, with the model taken out."""
    if client == "confluent":
        confluent_pipe(bootstrap, topic, group)
        return
    from kafka import KafkaConsumer, KafkaProducer

    from forecaster.io.kafka import construct, consumer_configs, producer_configs

    settings = settings_for(bootstrap, group_id=group)
    consumer = construct(KafkaConsumer, consumer_configs(settings))[0]
    producer = construct(KafkaProducer, producer_configs(settings))[0]
    consumer.subscribe([topic], listener=assignment_log())
    while True:
        batches = consumer.poll(timeout_ms=200, max_records=settings.poll_max_records)
        for records in batches.values():
            for record in records:
                producer.send(f"forecasts-{group}", forecast_of(record.value), record.key)
        if batches:
            producer.flush()
            consumer.commit()


def assigned(partitions: list[int]) -> None:
    """Logged as the service logs it, so that a pipe too is timed once its group formed."""
    print(f"partitions assigned: {sorted(partitions)}", flush=True)


def assignment_log() -> Any:
    """kafka-python's rebalance listener of the pipe."""
    from kafka import ConsumerRebalanceListener

    class AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_assigned(self, tps: set[Any]) -> None:
            assigned([tp.partition for tp in tps])

        def on_partitions_revoked(self, tps: set[Any]) -> None:
            pass

    return AssignmentLog()


def confluent_pipe(bootstrap: str, topic: str, group: str) -> None:
    """The same pipe on librdkafka, configured as the service's confluent client is."""
    import confluent_kafka

    from forecaster.io.kafka import consumer_configs, producer_configs
    from forecaster.io.kafka.confluent import PARTITIONER, PRODUCER_ONLY, confluent_configs

    settings = settings_for(bootstrap, group_id=group)
    conf = confluent_configs(consumer_configs(settings))
    consumer = confluent_kafka.Consumer({k: v for k, v in conf.items() if k not in PRODUCER_ONLY})
    producer = confluent_kafka.Producer(
        confluent_configs(producer_configs(settings)) | {"partitioner": PARTITIONER}
    )
    consumer.subscribe([topic], on_assign=lambda _, tps: assigned([tp.partition for tp in tps]))
    while True:
        first = consumer.poll(0.2)
        if first is None:
            continue
        messages = [first, *consumer.consume(settings.poll_max_records - 1, 0)]
        for message in messages:
            if message.error() is None:
                value = forecast_of(message.value() or b"")
                producer.produce(f"forecasts-{group}", value, message.key())
        producer.flush()
        consumer.commit(asynchronous=False)


def pipe_command(bootstrap: str, group: str, client: str) -> list[str]:
    return [sys.executable, __file__, "--pipe-child", bootstrap, group, client]


def measure(
    bootstrap: str, commands: list[list[str]], group: str, total: int, *, workdir: Path,
    timeout: float, extra_env: dict[str, str] | None = None,
) -> tuple[float, float]:  # fmt: skip
    """Start the commands (one group), time the group through ``total`` messages, stop them.

    A group is timed from its first commit after every member logged its partitions, so
    a member joining late (or librdkafka's second rebalance of a new group) puts no
    rebalance into the timed window. Returns messages per second, and the CPU time the
    processes used per message over the timed window (in µs: what a message costs,
    whatever share of the shared cores the processes got)."""
    pipe_run = commands[0][1] == __file__
    env = child_env() if pipe_run else service_env() | (extra_env or {})
    logs = [workdir / f"{group}-{n}.log" for n in range(len(commands))]
    formed = all_assigned(logs)
    with contextlib.ExitStack() as running:
        pids = [running.enter_context(process(command, log, env)).pid
                for command, log in zip(commands, logs, strict=True)]  # fmt: skip
        opened: list[float] = []

        def timed() -> None:
            opened.extend((time.monotonic(), cpu_seconds(pids)))

        rate = consumption_rate(bootstrap, group, total, timeout, formed, timed=timed)
        seconds, cpu = time.monotonic() - opened[0], cpu_seconds(pids) - opened[1]
        return rate, cpu / max(rate * seconds, 1.0) * 1e6


def kinds_of(clients: list[str], two_processes: bool) -> list[str]:
    """The runs of one repeat: ``<client>/pipe``, ``<client>/service``, ``<client>/service_x2``."""
    kinds = ("pipe", "service", "service_x2") if two_processes else ("pipe", "service")
    return [f"{client}/{kind}" for client in clients for kind in kinds]


def one_repeat(
    k: int, ticks: Path, models: Path, partitions: int, kinds: list[str], *, workdir: Path,
    timeout: float,
) -> tuple[dict[str, float], dict[str, float], int]:  # fmt: skip
    """The runs side by side on one fresh broker (Tansu slows as it fills up)."""
    rates: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with broker(workdir) as tansu:
        bootstrap = tansu.bootstrap
        total = publish_ticks(bootstrap, TOPIC, partitions, ticks)
        for name in kinds:
            client, kind = name.split("/")
            group = f"{client}-{kind}-{k}"
            if kind == "pipe":
                commands = [pipe_command(bootstrap, group, client)]
            else:
                service = [*service_command(bootstrap, TOPIC, group, models),
                           "--kafka-client", client]  # fmt: skip
                commands = [service] * (2 if kind == "service_x2" else 1)
            extra = EXACTLY_ONCE_ENV | {"FORECASTER_CHANGELOG_TOPIC": f"state-{group}"}
            rates[name], cpu[name] = measure(
                bootstrap, commands, group, total, workdir=workdir, timeout=timeout,
                extra_env=extra if kind == "service_eos" else None)  # fmt: skip
    return rates, cpu, total


def repeated(
    options: Any, ticks: Path, models: Path, kinds: list[str], workdir: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]], int]:
    """``options.repeats`` repeats of the runs ``kinds``: each run's msg/s and CPU µs per
    message by repeat, and the ticks each repeat published."""
    runs: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu_runs: dict[str, list[float]] = {kind: [] for kind in kinds}
    total = 0
    for k in range(options.repeats):
        rates, cpu, total = one_repeat(k, ticks, models, options.partitions, kinds,
                                       workdir=workdir, timeout=options.timeout)  # fmt: skip
        for kind, rate in rates.items():
            runs[kind].append(rate)
            cpu_runs[kind].append(cpu[kind])
    return runs, cpu_runs, total


def guarantees(options: Any, ticks: Path, models: Path, workdir: Path) -> dict[str, Any]:
    """``--exactly-once``: at least once against exactly once, side by side per repeat."""
    kinds = ["kafka-python/service", "kafka-python/service_eos"]
    runs, _, total = repeated(options, ticks, models, kinds, workdir)
    at_least, exactly = runs[kinds[0]], runs[kinds[1]]
    per_repeat = [ratio(e, a) for e, a in zip(exactly, at_least, strict=True)]
    results = {
        "runs_msg_per_s": runs,
        "at_least_once_msg_per_s": median(at_least),
        "exactly_once_msg_per_s": median(exactly),
        "runs_exactly_over_at_least_once": per_repeat,
        "exactly_over_at_least_once": median(per_repeat),
    }
    settings = {"ticks": total, "series": options.series, "partitions": options.partitions,
                "repeats": options.repeats, "model": "lstm 2x32",
                "exactly_once": "one transaction per input partition of a batch, changelog "
                                "checkpoints every checkpoint_interval_s (10 s)"}  # fmt: skip
    report("kafka-exactly-once", settings, results, options.json)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--pipe-child":
        pipe(sys.argv[2], TOPIC, sys.argv[3], sys.argv[4])
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--ticks", type=int, default=200_000)
    args.add_argument("--series", type=int, default=1000)
    args.add_argument("--partitions", type=int, default=4)
    args.add_argument("--timeout", type=float, default=1800.0)
    args.add_argument("--client", action="append", choices=CLIENTS,
                      help="a client to measure (repeatable; default: both)")  # fmt: skip
    args.add_argument("--two-processes", action="store_true",
                      help="also time two service processes in one group")  # fmt: skip
    args.add_argument("--exactly-once", action="store_true",
                      help="exactly_once against at_least_once, on kafka-python")  # fmt: skip
    options = args.parse_args(argv)
    clients = options.client or list(CLIENTS)
    kinds = kinds_of(clients, options.two_processes)
    workdir = options.workdir / "kafka"
    workdir.mkdir(parents=True, exist_ok=True)
    models = model_dir(workdir / "models")
    ticks = tick_file(workdir / f"ticks-{options.ticks}-{options.series}.csv", options.ticks,
                      options.series)  # fmt: skip
    if options.exactly_once:
        return guarantees(options, ticks, models, workdir)
    runs, cpu_runs, total = repeated(options, ticks, models, kinds, workdir)
    per_repeat = ratios(runs, clients)
    results = {
        "runs_msg_per_s": runs,
        **{f"{kind}_msg_per_s": median(rates) for kind, rates in runs.items()},
        "runs_cpu_us_per_msg": cpu_runs,
        **{f"{kind}_cpu_us_per_msg": median(cpu) for kind, cpu in cpu_runs.items()},
        "runs_ratios": per_repeat,
        **{name: median(values) for name, values in per_repeat.items()},
    }
    settings = {"ticks": total, "series": options.series, "partitions": options.partitions,
                "repeats": options.repeats, "model": "lstm 2x32",
                "clients": clients,
                "client_settings": "forecaster defaults (fetch_max_wait_ms 20, max_poll_records "
                "2000, linger_ms 5, batch 256 KiB, acks=all, idempotent, crc32c)"}  # fmt: skip
    report("kafka", settings, results, options.json)
    return results


def ratios(runs: dict[str, list[float]], clients: list[str]) -> dict[str, list[float]]:
    """Each repeat's side-by-side ratios: service over pipe per client, two processes over
    one, and the confluent service over the kafka-python one."""

    def over(top: str, bottom: str) -> list[float]:
        return [ratio(t, b) for t, b in zip(runs[top], runs[bottom], strict=True)]

    found: dict[str, list[float]] = {}
    for client in clients:
        found[f"{client}/ceiling_ratio"] = over(f"{client}/service", f"{client}/pipe")
        if f"{client}/service_x2" in runs:
            found[f"{client}/two_over_one"] = over(f"{client}/service_x2", f"{client}/service")
    if set(CLIENTS) <= set(clients):
        found["confluent_over_kafka_python_service"] = over(
            "confluent/service", "kafka-python/service"
        )
    return found


if __name__ == "__main__":
    main()
