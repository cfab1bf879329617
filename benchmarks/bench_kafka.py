"""Benchmark 1, Kafka ceiling ratio: the service end to end against a bare pass-through pipe.

On one Tansu broker, the same input topic is drained by (a) `forecaster run` with a
2-layer LSTM (32 units), one process and then two in one group, and (b) a bare
kafka-python pipe with the same client settings (consume, decode the JSON, encode a
forecast-sized JSON message, produce, wait for the acknowledgements, commit). Each run
is a fresh consumer group; rates come from the groups' committed offsets. Each repeat
runs the three on a fresh broker (Tansu keeps every message and slows as it fills), and
the ratios are the medians of each repeat's side-by-side ratios.

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
    process,
    publish_ticks,
    service_command,
    service_env,
    settings_for,
)

TOPIC = "ticks"
KINDS = ("pipe", "service", "service_x2")
GUARANTEE_KINDS = ("service", "service_eos")
EXACTLY_ONCE_ENV = {"FORECASTER_PROCESSING_GUARANTEE": "exactly_once",
                    "FORECASTER_STATE_STORE": "kafka"}  # fmt: skip


def pipe(bootstrap: str, topic: str, group: str) -> None:
    """The ceiling: what a Python service does around its model, with the model taken out."""
    from kafka import KafkaConsumer, KafkaProducer

    from forecaster.io.kafka import construct, consumer_configs, producer_configs

    settings = settings_for(bootstrap, group_id=group)
    consumer = construct(KafkaConsumer, consumer_configs(settings))[0]
    producer = construct(KafkaProducer, producer_configs(settings))[0]
    consumer.subscribe([topic])
    while True:
        batches = consumer.poll(timeout_ms=200, max_records=settings.poll_max_records)
        for records in batches.values():
            for record in records:
                tick = json.loads(record.value)
                forecast = {
                    "series": tick["series"], "ts": tick["ts"], "price": tick["price"],
                    "forecast": tick["price"] * 1.0001, "model_version": "lstm-pipe",
                }  # fmt: skip
                producer.send(f"forecasts-{group}", json.dumps(forecast).encode(), record.key)
        if batches:
            producer.flush()
            consumer.commit()


def pipe_command(bootstrap: str, group: str) -> list[str]:
    return [sys.executable, __file__, "--pipe-child", bootstrap, group]


def measure(
    bootstrap: str, commands: list[list[str]], group: str, total: int, *, workdir: Path,
    timeout: float, extra_env: dict[str, str] | None = None,
) -> float:  # fmt: skip
    """Start the commands (one group), time the group through ``total`` messages, stop them.

    A service group is timed from its first commit after every member logged its
    partitions, so a member joining late puts no rebalance into the timed window."""
    pipe_run = commands[0][1] == __file__
    env = child_env() if pipe_run else service_env() | (extra_env or {})
    logs = [workdir / f"{group}-{n}.log" for n in range(len(commands))]
    formed = (lambda: True) if pipe_run else all_assigned(logs)
    with contextlib.ExitStack() as running:
        for command, log in zip(commands, logs, strict=True):
            running.enter_context(process(command, log, env))
        return consumption_rate(bootstrap, group, total, timeout, formed)


def one_repeat(
    k: int, ticks: Path, models: Path, partitions: int, *, workdir: Path, timeout: float,
    kinds: tuple[str, ...] = KINDS,
) -> tuple[dict[str, float], int]:  # fmt: skip
    """The runs side by side on one fresh broker (Tansu slows as it fills up)."""
    rates: dict[str, float] = {}
    with broker(workdir) as bootstrap:
        total = publish_ticks(bootstrap, TOPIC, partitions, ticks)
        for kind in kinds:
            group = f"{kind}-{k}"
            if kind == "pipe":
                commands = [pipe_command(bootstrap, group)]
            else:
                service = service_command(bootstrap, TOPIC, group, models)
                commands = [service] * (2 if kind == "service_x2" else 1)
            extra = EXACTLY_ONCE_ENV | {"FORECASTER_CHANGELOG_TOPIC": f"state-{group}"}
            rates[kind] = measure(bootstrap, commands, group, total, workdir=workdir,
                                  timeout=timeout,
                                  extra_env=extra if kind == "service_eos" else None)  # fmt: skip
    return rates, total


def guarantees(options: Any, ticks: Path, models: Path, workdir: Path) -> dict[str, Any]:
    """``--exactly-once``: at least once against exactly once, side by side per repeat."""
    runs: dict[str, list[float]] = {kind: [] for kind in GUARANTEE_KINDS}
    for k in range(options.repeats):
        rates, total = one_repeat(k, ticks, models, options.partitions, workdir=workdir,
                                  timeout=options.timeout, kinds=GUARANTEE_KINDS)  # fmt: skip
        for kind, rate in rates.items():
            runs[kind].append(rate)
    per_repeat = [ratio(e, a) for e, a in zip(runs["service_eos"], runs["service"], strict=True)]
    results = {
        "runs_msg_per_s": runs,
        "at_least_once_msg_per_s": median(runs["service"]),
        "exactly_once_msg_per_s": median(runs["service_eos"]),
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
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--pipe-child":
        pipe(sys.argv[2], TOPIC, sys.argv[3])
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--ticks", type=int, default=200_000)
    args.add_argument("--series", type=int, default=1000)
    args.add_argument("--partitions", type=int, default=4)
    args.add_argument("--timeout", type=float, default=1800.0)
    args.add_argument("--exactly-once", action="store_true",
                      help="compare exactly_once with at_least_once instead")  # fmt: skip
    options = args.parse_args(argv)
    workdir = options.workdir / "kafka"
    workdir.mkdir(parents=True, exist_ok=True)
    models = model_dir(workdir / "models")
    ticks = tick_file(workdir / f"ticks-{options.ticks}-{options.series}.csv", options.ticks,
                      options.series)  # fmt: skip
    if options.exactly_once:
        return guarantees(options, ticks, models, workdir)
    runs: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for k in range(options.repeats):
        rates, total = one_repeat(
            k, ticks, models, options.partitions, workdir=workdir, timeout=options.timeout
        )
        for kind, rate in rates.items():
            runs[kind].append(rate)
    per_repeat = {
        "ceiling_ratio": [ratio(s, p) for s, p in zip(runs["service"], runs["pipe"], strict=True)],
        "two_over_one": [
            ratio(two, one) for two, one in zip(runs["service_x2"], runs["service"], strict=True)
        ],
    }
    results = {
        "runs_msg_per_s": runs,
        "pipe_msg_per_s": median(runs["pipe"]),
        "service_msg_per_s": median(runs["service"]),
        "two_processes_msg_per_s": median(runs["service_x2"]),
        "runs_ratios": per_repeat,
        "ceiling_ratio": median(per_repeat["ceiling_ratio"]),
        "two_over_one": median(per_repeat["two_over_one"]),
    }
    settings = {"ticks": total, "series": options.series, "partitions": options.partitions,
                "repeats": options.repeats, "model": "lstm 2x32",
                "client": "forecaster defaults (fetch_max_wait_ms 20, max_poll_records 2000, "
                          "linger_ms 5, batch 256 KiB, acks=all, idempotent, crc32c)"}  # fmt: skip
    report("kafka", settings, results, options.json)
    return results


if __name__ == "__main__":
    main()
