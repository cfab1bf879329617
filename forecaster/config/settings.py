"""Settings: every setting, its default, what it means and what its value must be.

This is the one place a default is written. The parts take explicit arguments
(``forecaster.params`` turns Settings into them) and their own parameter classes read
their defaults from here; so this module imports no part of the service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import UTC
from pathlib import Path
from typing import Any

from forecaster.config.rules import (
    EPOCH_NS_TIME,
    NOT_EMPTY,
    TOPIC_NAME,
    Rule,
    above,
    at_least,
    between,
    inside,
    one_of,
)
from forecaster.errors import ConfigError
from forecaster.timestamps import rfc3339_ns

SAMPLE_TICKS = Path(__file__).resolve().parents[2] / "sample_data" / "ticks.csv"
CELLS = ("lstm", "gru")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
STATE_STORES = ("directory", "kafka")
KAFKA_CLIENTS = ("kafka-python", "confluent")
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
OVERLAPS = ("off", "commit", "poll")  # what overlaps a batch's acknowledgement (Pipeline)
# Half of the Kafka producer's default max_request_size (1 MiB): a dead letter's kept bytes
# plus its key and headers always fit in one request.
MAX_DEAD_LETTER_BYTES = 524288
# Series whose quality may be exported with a series label: a bounded label set.
MAX_LABELLED_SERIES = 20
MAX_INT = 2**62  # any integer setting; far past every sane value, and inside int64


def _beyond_numbers(value: Any) -> str:
    """What a number must be that it is not ("" if it is no number or is fine): every
    setting is used in arithmetic, and NumPy's in 64 bits."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return f"at most {MAX_INT} in size"
    return ""


def _setting(default: Any, help: str, rule: Rule | None = None) -> Any:
    return field(default=default, metadata={"help": help, "rule": rule})


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told. See README.md for the reference table."""

    # Input and output of the embedded (file) mode
    input: str = _setting(
        "", "Tick CSV replayed by `run` when no Kafka is configured (default: sample data)"
    )
    rate: float = _setting(
        500.0, "Ticks per second `run` replays a file at (0 = as fast as possible)", at_least(0)
    )
    loop: bool = _setting(True, "`run` replays the file again, shifted in time, when it ends")
    forecasts_out: str = _setting("-", "Where forecasts go as JSON lines: a path, or - for stdout")
    dead_letters_out: str = _setting(
        "dead-letters.jsonl",
        "Where rejected ticks go as JSON lines: a path, - (stdout) or stderr (which logs use)",
    )
    max_batch: int = _setting(5000, "Most ticks stepped in one micro-batch", at_least(1))
    # Kafka: used instead of the file mode when bootstrap_servers is set
    bootstrap_servers: str = _setting(
        "", "Kafka brokers, host:port[,host:port...]; empty = file mode (no Kafka)"
    )
    input_topic: str = _setting("ticks", "Topic of JSON ticks, keyed by series", TOPIC_NAME)
    output_topic: str = _setting(
        "forecasts", "Topic forecasts are written to, keyed by series", TOPIC_NAME
    )
    dlq_topic: str = _setting(
        "ticks.dlq", "Topic rejected messages are written to, as received", TOPIC_NAME
    )
    group_id: str = _setting("forecaster", "Consumer group of the service's instances", NOT_EMPTY)
    kafka_client: str = _setting(
        "kafka-python",
        "Kafka client of the service's input and output: kafka-python (pure Python) or "
        "confluent (librdkafka; pip install 'forecaster[confluent]')",
        one_of(KAFKA_CLIENTS),
    )
    security_protocol: str = _setting(
        "PLAINTEXT",
        "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        one_of(SECURITY_PROTOCOLS),
    )
    sasl_mechanism: str = _setting("", "SASL mechanism, e.g. PLAIN or SCRAM-SHA-512")
    sasl_username: str = _setting("", "SASL user name")
    sasl_password: str = field(default="", repr=False, metadata={"help": "SASL password"})
    ssl_cafile: str = _setting("", "CA certificate file to verify the brokers with")
    ssl_certfile: str = _setting("", "Client certificate file (PEM)")
    ssl_keyfile: str = _setting("", "Client private key file (PEM)")
    poll_max_records: int = _setting(2000, "Most Kafka records in one micro-batch", at_least(1))
    fetch_max_wait_ms: int = _setting(
        20,
        "Longest a broker holds a fetch for more data (low: a drained partition stalls none)",
        at_least(0),
    )
    session_timeout_ms: int = _setting(
        10000, "Consumer group session: an instance silent this long loses its partitions"
    )
    heartbeat_interval_ms: int = _setting(
        3000, "Consumer heartbeat interval (below a third of session_timeout_ms)"
    )
    max_poll_interval_ms: int = _setting(
        60000, "Longest gap between two polls before the instance leaves the group"
    )
    request_timeout_ms: int = _setting(20000, "Kafka client request timeout")
    reconnect_backoff_max_ms: int = _setting(
        10000, "Longest wait between two attempts to reach a broker that is down"
    )
    metadata_max_age_ms: int = _setting(
        30000,
        "Longest the Kafka clients keep topic metadata (a topic's partitions appearing "
        "or growing is seen within this)",
        at_least(1),
    )
    linger_ms: int = _setting(5, "Producer wait for more records to fill a batch")
    producer_batch_bytes: int = _setting(262144, "Producer batch size per partition, in bytes")
    delivery_timeout_ms: int = _setting(
        30000, "Longest a batch's forecasts may take to be acknowledged before it is retried"
    )
    enable_idempotence: bool = _setting(
        True, "Idempotent producer (no duplicates from the producer's own retries)"
    )
    overlap_delivery: str = _setting(
        "commit",
        "At least once, what a batch's acknowledgement overlaps: `off`; `commit` (the batch "
        "before's offset commit); `poll` (also the next poll: a batch polled that early "
        "misses the ticks of the wait, which measured slower at 25 % load)",
        one_of(OVERLAPS),
    )
    processing_guarantee: str = _setting(
        "at_least_once",
        "Kafka delivery: `at_least_once` (a crash repeats forecasts) or `exactly_once` (one "
        "transaction per batch holds its forecasts, dead letters, checkpoints and input "
        "offsets; needs state_store `kafka`)",
        one_of(PROCESSING_GUARANTEES),
    )
    # Model
    model_dir: str = _setting("", "Model registry directory; empty keeps models in memory only")
    cell: str = _setting(
        "lstm", "Recurrent cell of newly trained models: lstm or gru", one_of(CELLS)
    )
    layers: int = _setting(2, "Recurrent layers of newly trained models", between(1, 8))
    units: int = _setting(32, "Units per recurrent layer of newly trained models", between(1, 1024))
    # Features and per-series state
    min_history: int = _setting(
        32, "Returns a series needs before the model forecasts it", at_least(2)
    )
    scale_halflife: float = _setting(
        500.0, "Half-life, in ticks, of the return scale estimate", above(0)
    )
    level_halflife: float = _setting(50.0, "Half-life, in ticks, of the mean log price", above(0))
    ring_length: int = _setting(
        512, "Recent steps kept per series for retraining and re-warming", at_least(2)
    )
    # Prediction intervals (see README, "Prediction intervals")
    interval_coverage: float = _setting(
        0.9, "Nominal coverage of the interval around every forecast", inside(0, 1)
    )
    interval_step: float = _setting(
        0.032,
        "Largest step of a series' interval threshold per scored forecast (also tracked "
        "at 1/4 and 1/16 of it)",
        above(0),
    )
    interval_halflife: float = _setting(
        8.0, "Half-life, in ticks, of the fast scale of a series' intervals", above(0)
    )
    # Training
    bootstrap_steps: int = _setting(
        20000,
        "Warm steps collected before the first model is trained when none exists",
        at_least(1),
    )
    train_window: int = _setting(64, "Steps per training window")
    train_epochs: int = _setting(30, "Most training epochs (early stopping ends sooner)")
    seed: int = _setting(0, "Seed of training: equal data and seed give an equal model")
    # Retraining (see README, "Retraining and the model registry")
    retrain_interval_s: float = _setting(
        0.0,
        "Seconds between retrainings (a replay counts tick time), e.g. 86400; 0 = off",
        at_least(0),
    )
    retrain_cron: str = _setting(
        "", "Crontab (UTC) of retrainings instead of retrain_interval_s, e.g. '0 */6 * * *'"
    )
    retrain_every_ticks: int = _setting(
        0, "Also retrain after this many warm steps; 0 = off", at_least(0)
    )
    retrain_window_ticks: int = _setting(
        0, "Train on the last N steps of each series (0 = all of its ring_length ring)", at_least(0)
    )
    retrain_window_s: float = _setting(
        0.0,
        "Train only on steps of the last T seconds before the newest tick (0 = no limit)",
        at_least(0),
    )
    retrain_holdout: float = _setting(
        0.2, "Share of each series' window held out to validate a candidate on", inside(0, 1)
    )
    retrain_margin: float = _setting(
        0.01,
        "A candidate's holdout MAE must be below (1 - margin) x serving and naive MAE",
        inside(-1, 1),
    )
    retrain_timeout_s: float = _setting(
        1800.0, "A live retraining running longer has failed", above(0)
    )
    decay_window: int = _setting(
        2000,
        "Scored forecasts the serving model's live MASE is taken over; 0 = no decay trigger",
        at_least(0),
    )
    decay_mase: float = _setting(
        1.0, "Retrain when the serving model's live MASE rises above this", above(0)
    )
    decay_margin: float = _setting(
        0.1, "Or when it is this much worse than its own holdout MASE (0.1: 10 %)", at_least(0)
    )
    decay_cooldown_s: float = _setting(
        3600.0, "At most one decay retraining per this many seconds of tick time", at_least(0)
    )
    promotion: str = _setting(
        "shadow",
        "How a candidate that passed the holdout gate is promoted: shadow (scored on the live "
        "stream beside the serving model first) or gate (at once)",
        one_of(("shadow", "gate")),
    )
    shadow_min_points: int = _setting(
        2000, "Scored forecasts a candidate in shadow is judged on", at_least(2)
    )
    shadow_max_s: float = _setting(
        86400.0,
        "Seconds of tick time a candidate may stay in shadow; rejected if it has fewer points",
        above(0),
    )
    shadow_significance: float = _setting(
        0.05,
        "Level of the Diebold-Mariano test that the candidate in shadow beats the serving model",
        inside(0, 1),
    )
    retrain_threads: int = _setting(
        1,
        "TensorFlow threads (intra- and inter-op each) of a training; 0 = TensorFlow's default",
        at_least(0),
    )
    keep_versions: int = _setting(
        10,
        "Model versions kept in model_dir (never the promoted one or the rollback target)",
        at_least(2),
    )
    registry_poll_s: float = _setting(
        5.0,
        "Seconds between checks of model_dir for a version another instance promoted "
        "(live; 0 = never)",
        at_least(0),
    )
    # Operations
    metrics_port: int = _setting(
        9108, "Port of /metrics, /healthz and /readyz (0 = off)", between(0, 65535)
    )
    metrics_host: str = _setting("0.0.0.0", "Address the metrics server binds")
    admin_token: str = field(
        default="",
        repr=False,
        metadata={"help": "Bearer token that POST /retrain requires; empty = POST /retrain is off"},
    )
    # 1000 points: with a dozen busy series that is some minutes of ticks.
    quality_halflife: float = _setting(
        1000.0,
        "Half-life, in scored forecasts, of the rolling forecast-quality gauges",
        above(0),
    )
    quality_series_labels: str = _setting(
        "",
        f"Comma-separated series (at most {MAX_LABELLED_SERIES}) whose forecast quality is also "
        "exported with a series label",
    )
    log_level: str = _setting(
        "INFO",
        "Log on stderr from this level on: DEBUG (which also shows TensorFlow's start-up notes), "
        "INFO, WARNING or ERROR",
        one_of(LOG_LEVELS, str.upper),
    )
    # Reliability: state checkpoints, idle eviction, input limits
    state_store: str = _setting(
        "directory",
        "Where per-partition state checkpoints go (Kafka input): `directory` (state_dir, one "
        "instance) or `kafka` (changelog_topic, shared by every instance of the group)",
        one_of(STATE_STORES),
    )
    state_dir: str = _setting(
        "", "Directory of per-partition state checkpoints (Kafka); empty = no checkpoints"
    )
    changelog_topic: str = _setting(
        "forecaster-state",
        "Compacted topic of state checkpoints when state_store is `kafka` (created with the "
        "input topic's partition count if missing)",
        TOPIC_NAME,
    )
    checkpoint_interval_s: float = _setting(
        10.0,
        "Seconds between state checkpoints (also written on revoke and shutdown)",
        at_least(0),
    )
    evict_ttl_s: float = _setting(
        86400.0,
        "A series idle this long (event time: behind its partition's newest tick) is "
        "evicted; 0 = never",
        at_least(0),
    )
    max_message_bytes: int = _setting(
        16384,
        "Longest tick message accepted, in bytes; a longer one's dead letter keeps this many "
        f"of its first bytes (at most {MAX_DEAD_LETTER_BYTES})",
        between(1, MAX_DEAD_LETTER_BYTES),
    )
    max_series: int = _setting(
        50000,
        "Most series one instance holds; a tick of a new series beyond it is a dead letter "
        "(series_limit). 0 = no limit",
        at_least(0),
    )
    max_future_skew_s: float = _setting(
        300.0,
        "On Kafka input, a tick more than this many seconds ahead of the wall clock is a "
        "dead letter (ts_in_future); 0 = no check",
        at_least(0),
    )
    require_series_key: bool = _setting(
        True,
        "On Kafka input, a tick whose message key is not its series id is a dead letter "
        "(key_mismatch)",
    )
    max_series_chars: int = _setting(200, "Longest series id accepted, in characters", at_least(1))
    min_price: float = _setting(1e-9, "Lowest price accepted", above(0))
    max_price: float = _setting(1e12, "Highest price accepted")
    min_ts: str = _setting(
        "1970-01-01T00:00:00Z", "Earliest tick ts accepted (RFC 3339)", EPOCH_NS_TIME
    )
    max_ts: str = _setting(
        "2200-01-01T00:00:00Z", "Latest tick ts accepted (RFC 3339)", EPOCH_NS_TIME
    )

    def __post_init__(self) -> None:
        for setting in fields(self):
            rule, value = setting.metadata.get("rule"), getattr(self, setting.name)
            if problem := _beyond_numbers(value):
                raise ConfigError(f"{setting.name} must be {problem}, got {value!r}")
            if rule is not None and not rule.holds(value):
                raise ConfigError(f"{setting.name} must be {rule.says}, got {value!r}")
        if problem := self._kafka_problem() or self._retraining_problem() or self._input_problem():
            raise ConfigError(problem)
        if len(self.quality_series()) > MAX_LABELLED_SERIES:
            raise ConfigError(
                f"quality_series_labels names more than {MAX_LABELLED_SERIES} series: "
                "a label per series must stay a small, bounded set"
            )

    def _kafka_problem(self) -> str:
        if not self.heartbeat_interval_ms < self.session_timeout_ms:
            return "heartbeat_interval_ms must be below session_timeout_ms"
        if not self.fetch_max_wait_ms < self.request_timeout_ms:
            return "fetch_max_wait_ms must be below request_timeout_ms"
        if self.delivery_timeout_ms < self.linger_ms + self.request_timeout_ms:
            return "delivery_timeout_ms must be >= linger_ms + request_timeout_ms"
        if self.exactly_once() and self.state_store != "kafka":
            return (
                "processing_guarantee exactly_once needs state_store = kafka: a checkpoint "
                "must be written in the same Kafka transaction as the forecasts and offsets "
                "it goes with, which a state directory cannot join"
            )
        if self.exactly_once() and self.kafka_client != "kafka-python":
            return (
                "processing_guarantee exactly_once runs on kafka_client = kafka-python only: "
                "the confluent transport has no transactions yet"
            )
        return ""

    def _retraining_problem(self) -> str:
        if self.retrain_interval_s and self.retrain_cron:
            return "set retrain_interval_s or retrain_cron, not both"
        if self.retrain_cron:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.retrain_cron, timezone=UTC)
            except ValueError as exc:
                return f"retrain_cron {self.retrain_cron!r} is not a crontab: {exc}"
        return ""

    def _input_problem(self) -> str:
        if not self.min_price < self.max_price:
            return f"min_price must be below max_price, got {self.min_price}, {self.max_price}"
        if not rfc3339_ns(self.min_ts) < rfc3339_ns(self.max_ts):
            return f"min_ts must be before max_ts, got {self.min_ts}, {self.max_ts}"
        return ""

    def quality_series(self) -> tuple[str, ...]:
        """The series named in quality_series_labels, in order, without repeats."""
        names = (name.strip() for name in self.quality_series_labels.split(","))
        return tuple(dict.fromkeys(name for name in names if name))

    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    def input_path(self) -> Path:
        return Path(self.input) if self.input else SAMPLE_TICKS
