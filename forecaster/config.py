"""Settings: defaults, then a TOML file, then ``FORECASTER_*`` environment variables, then flags.

Every setting is one flat field; its environment variable is ``FORECASTER_`` plus the
field name in capitals (``metrics_port`` -> ``FORECASTER_METRICS_PORT``), and a config
file uses the field names as keys. Values are validated when Settings is built.

>>> Settings(units=16).units
16
>>> load(environ={"FORECASTER_METRICS_PORT": "9200"}).metrics_port
9200
>>> Settings(cell="transformer")
Traceback (most recent call last):
...
forecaster.errors.ConfigError: cell must be one of ('lstm', 'gru'), got 'transformer'
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.core.engine import EngineParams
from forecaster.core.features import FeatureParams
from forecaster.core.ticks import InputLimits, rfc3339_ns
from forecaster.errors import ConfigError
from forecaster.model.spec import ModelSpec
from forecaster.ops.quality import DEFAULT_HALFLIFE, MAX_LABELLED_SERIES

if TYPE_CHECKING:
    from forecaster.retraining.coordinator import RetrainPolicy

ENV_PREFIX = "FORECASTER_"
SAMPLE_TICKS = Path(__file__).resolve().parent.parent / "sample_data" / "ticks.csv"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
STATE_STORES = ("directory", "kafka")
# Half of the Kafka producer's default max_request_size (1 MiB): a dead letter's kept bytes
# plus its key and headers always fit in one request.
MAX_DEAD_LETTER_BYTES = 524288


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told. See README.md for the reference table."""

    # Input and output of the embedded (file) mode
    input: str = _setting(
        "", "Tick CSV replayed by `run` when no Kafka is configured (default: sample data)"
    )
    rate: float = _setting(
        500.0, "Ticks per second `run` replays a file at (0 = as fast as possible)"
    )
    loop: bool = _setting(True, "`run` replays the file again, shifted in time, when it ends")
    forecasts_out: str = _setting("-", "Where forecasts go as JSON lines: a path, or - for stdout")
    dead_letters_out: str = _setting(
        "dead-letters.jsonl",
        "Where rejected ticks go as JSON lines: a path, - (stdout) or stderr (which logs use)",
    )
    max_batch: int = _setting(5000, "Most ticks stepped in one micro-batch")
    # Kafka: used instead of the file mode when bootstrap_servers is set
    bootstrap_servers: str = _setting(
        "", "Kafka brokers, host:port[,host:port...]; empty = file mode (no Kafka)"
    )
    input_topic: str = _setting("ticks", "Topic of JSON ticks, keyed by series")
    output_topic: str = _setting("forecasts", "Topic forecasts are written to, keyed by series")
    dlq_topic: str = _setting("ticks.dlq", "Topic rejected messages are written to, as received")
    group_id: str = _setting("forecaster", "Consumer group of the service's instances")
    security_protocol: str = _setting(
        "PLAINTEXT", "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: str = _setting("", "SASL mechanism, e.g. PLAIN or SCRAM-SHA-512")
    sasl_username: str = _setting("", "SASL user name")
    sasl_password: str = field(default="", repr=False, metadata={"help": "SASL password"})
    ssl_cafile: str = _setting("", "CA certificate file to verify the brokers with")
    ssl_certfile: str = _setting("", "Client certificate file (PEM)")
    ssl_keyfile: str = _setting("", "Client private key file (PEM)")
    poll_max_records: int = _setting(2000, "Most Kafka records in one micro-batch")
    fetch_max_wait_ms: int = _setting(
        20, "Longest a broker holds a fetch for more data (low: a drained partition stalls none)"
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
    )
    linger_ms: int = _setting(5, "Producer wait for more records to fill a batch")
    producer_batch_bytes: int = _setting(262144, "Producer batch size per partition, in bytes")
    delivery_timeout_ms: int = _setting(
        30000, "Longest a batch's forecasts may take to be acknowledged before it is retried"
    )
    enable_idempotence: bool = _setting(
        True, "Idempotent producer (no duplicates from the producer's own retries)"
    )
    # Model
    model_dir: str = _setting("", "Model registry directory; empty keeps models in memory only")
    cell: str = _setting("lstm", "Recurrent cell of newly trained models: lstm or gru")
    layers: int = _setting(2, "Recurrent layers of newly trained models")
    units: int = _setting(32, "Units per recurrent layer of newly trained models")
    # Features and per-series state
    min_history: int = _setting(32, "Returns a series needs before the model forecasts it")
    scale_halflife: float = _setting(500.0, "Half-life, in ticks, of the return scale estimate")
    level_halflife: float = _setting(50.0, "Half-life, in ticks, of the mean log price")
    ring_length: int = _setting(512, "Recent steps kept per series for retraining and re-warming")
    # Training
    bootstrap_steps: int = _setting(
        20000, "Warm steps collected before the first model is trained when none exists"
    )
    train_window: int = _setting(64, "Steps per training window")
    train_epochs: int = _setting(30, "Most training epochs (early stopping ends sooner)")
    seed: int = _setting(0, "Seed of training: equal data and seed give an equal model")
    # Retraining (see README, "Retraining and the model registry")
    retrain_interval_s: float = _setting(
        0.0, "Seconds between retrainings (a replay counts tick time), e.g. 86400; 0 = off"
    )
    retrain_cron: str = _setting(
        "", "Crontab (UTC) of retrainings instead of retrain_interval_s, e.g. '0 */6 * * *'"
    )
    retrain_every_ticks: int = _setting(0, "Also retrain after this many warm steps; 0 = off")
    retrain_window_ticks: int = _setting(
        0, "Train on the last N steps of each series (0 = all of its ring_length ring)"
    )
    retrain_window_s: float = _setting(
        0.0, "Train only on steps of the last T seconds before the newest tick (0 = no limit)"
    )
    retrain_holdout: float = _setting(
        0.2, "Share of each series' window held out to validate a candidate on"
    )
    retrain_margin: float = _setting(
        0.01, "A candidate's holdout MAE must be below (1 - margin) x serving and naive MAE"
    )
    retrain_timeout_s: float = _setting(1800.0, "A live retraining running longer has failed")
    retrain_threads: int = _setting(
        1, "TensorFlow threads (intra- and inter-op each) of a training; 0 = TensorFlow's default"
    )
    keep_versions: int = _setting(10, "Model versions kept in model_dir (never the promoted "
                                  "one or the rollback target)")  # fmt: skip
    registry_poll_s: float = _setting(
        5.0,
        "Seconds between checks of model_dir for a version another instance promoted "
        "(live; 0 = never)",
    )
    # Operations
    metrics_port: int = _setting(9108, "Port of /metrics, /healthz and /readyz (0 = off)")
    metrics_host: str = _setting("0.0.0.0", "Address the metrics server binds")
    admin_token: str = field(
        default="",
        repr=False,
        metadata={"help": "Bearer token that POST /retrain requires; empty = POST /retrain is off"},
    )
    quality_halflife: float = _setting(
        DEFAULT_HALFLIFE, "Half-life, in scored forecasts, of the rolling forecast-quality gauges"
    )
    quality_series_labels: str = _setting(
        "",
        f"Comma-separated series (at most {MAX_LABELLED_SERIES}) whose forecast quality is also "
        "exported with a series label",
    )
    log_level: str = _setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR")
    # Reliability: state checkpoints, idle eviction, input limits
    state_store: str = _setting(
        "directory",
        "Where per-partition state checkpoints go (Kafka input): `directory` (state_dir, one "
        "instance) or `kafka` (changelog_topic, shared by every instance of the group)",
    )
    state_dir: str = _setting(
        "", "Directory of per-partition state checkpoints (Kafka); empty = no checkpoints"
    )
    changelog_topic: str = _setting(
        "forecaster-state",
        "Compacted topic of state checkpoints when state_store is `kafka` (created with the "
        "input topic's partition count if missing)",
    )
    checkpoint_interval_s: float = _setting(
        10.0, "Seconds between state checkpoints (also written on revoke and shutdown)"
    )
    evict_ttl_s: float = _setting(
        86400.0,
        "A series idle this long (event time: behind its partition's newest tick) is "
        "evicted; 0 = never",
    )
    max_message_bytes: int = _setting(
        16384,
        "Longest tick message accepted, in bytes; a longer one's dead letter keeps this many "
        "of its first bytes (at most 524288)",
    )
    max_series: int = _setting(
        50000,
        "Most series one instance holds; a tick of a new series beyond it is a dead letter "
        "(series_limit). 0 = no limit",
    )
    max_future_skew_s: float = _setting(
        300.0,
        "On Kafka input, a tick more than this many seconds ahead of the wall clock is a "
        "dead letter (ts_in_future); 0 = no check",
    )
    require_series_key: bool = _setting(
        True,
        "On Kafka input, a tick whose message key is not its series id is a dead letter "
        "(key_mismatch)",
    )
    max_series_chars: int = _setting(200, "Longest series id accepted, in characters")
    min_price: float = _setting(1e-9, "Lowest price accepted")
    max_price: float = _setting(1e12, "Highest price accepted")
    min_ts: str = _setting("1970-01-01T00:00:00Z", "Earliest tick ts accepted (RFC 3339)")
    max_ts: str = _setting("2200-01-01T00:00:00Z", "Latest tick ts accepted (RFC 3339)")

    def __post_init__(self) -> None:
        self.model_spec()
        self.engine_params()
        if self.rate < 0:
            raise ConfigError(f"rate must be >= 0, got {self.rate}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.bootstrap_steps < 1:
            raise ConfigError(f"bootstrap_steps must be >= 1, got {self.bootstrap_steps}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be 0-65535, got {self.metrics_port}")
        if self.quality_halflife <= 0:
            raise ConfigError(f"quality_halflife must be > 0, got {self.quality_halflife}")
        if len(self.quality_series()) > MAX_LABELLED_SERIES:
            raise ConfigError(
                f"quality_series_labels names more than {MAX_LABELLED_SERIES} series: "
                "a label per series must stay a small, bounded set"
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level}"
            )
        self._check_kafka()
        self.retrain_policy()
        self.input_limits()
        if self.checkpoint_interval_s < 0 or self.evict_ttl_s < 0:
            raise ConfigError("checkpoint_interval_s and evict_ttl_s must be >= 0")
        if self.max_future_skew_s < 0:
            raise ConfigError(f"max_future_skew_s must be >= 0, got {self.max_future_skew_s}")
        if self.max_series < 0:
            raise ConfigError(f"max_series must be >= 0, got {self.max_series}")
        if self.max_message_bytes > MAX_DEAD_LETTER_BYTES:
            raise ConfigError(
                f"max_message_bytes must be <= {MAX_DEAD_LETTER_BYTES} (a dead letter keeps that "
                f"many bytes and must fit in one produce request), got {self.max_message_bytes}"
            )
        if self.state_store not in STATE_STORES:
            raise ConfigError(
                f"state_store must be one of {STATE_STORES}, got {self.state_store!r}"
            )

    def _check_kafka(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security_protocol must be one of {SECURITY_PROTOCOLS}, "
                f"got {self.security_protocol!r}"
            )
        if self.metadata_max_age_ms < 1:
            raise ConfigError(f"metadata_max_age_ms must be >= 1, got {self.metadata_max_age_ms}")
        if self.poll_max_records < 1:
            raise ConfigError(f"poll_max_records must be >= 1, got {self.poll_max_records}")
        if not self.heartbeat_interval_ms < self.session_timeout_ms:
            raise ConfigError("heartbeat_interval_ms must be below session_timeout_ms")
        if not 0 <= self.fetch_max_wait_ms < self.request_timeout_ms:
            raise ConfigError("fetch_max_wait_ms must be >= 0 and below request_timeout_ms")
        if self.delivery_timeout_ms < self.linger_ms + self.request_timeout_ms:
            raise ConfigError("delivery_timeout_ms must be >= linger_ms + request_timeout_ms")

    def model_spec(self) -> ModelSpec:
        return ModelSpec(cell=self.cell, layers=self.layers, units=self.units)

    def feature_params(self) -> FeatureParams:
        return FeatureParams(
            min_history=self.min_history,
            scale_halflife=self.scale_halflife,
            level_halflife=self.level_halflife,
        )

    def retrain_policy(self) -> RetrainPolicy:
        from forecaster.retraining.coordinator import RetrainPolicy
        from forecaster.retraining.window import WindowSpec

        if self.retrain_threads < 0:
            raise ConfigError(f"retrain_threads must be >= 0, got {self.retrain_threads}")
        return RetrainPolicy(
            interval_s=self.retrain_interval_s,
            cron=self.retrain_cron,
            every_ticks=self.retrain_every_ticks,
            bootstrap_steps=self.bootstrap_steps,
            window=WindowSpec(ticks=self.retrain_window_ticks, seconds=self.retrain_window_s),
            holdout=self.retrain_holdout,
            margin=self.retrain_margin,
            timeout_s=self.retrain_timeout_s,
            keep_versions=self.keep_versions,
            registry_poll_s=self.registry_poll_s,
        )

    def engine_params(self) -> EngineParams:
        if self.ring_length < 2:
            raise ConfigError(f"ring_length must be >= 2, got {self.ring_length}")
        return EngineParams(
            features=self.feature_params(),
            ring_length=self.ring_length,
            evict_ttl_ns=int(self.evict_ttl_s * 1e9),
            max_series=self.max_series,
        )

    def input_limits(self) -> InputLimits:
        try:
            return InputLimits(
                max_message_bytes=self.max_message_bytes,
                max_series_chars=self.max_series_chars,
                min_price=self.min_price,
                max_price=self.max_price,
                min_ts_ns=rfc3339_ns(self.min_ts),
                max_ts_ns=rfc3339_ns(self.max_ts),
                max_future_skew_ns=int(self.max_future_skew_s * 1e9),
            )
        except ValueError as exc:
            raise ConfigError(f"input limits: {exc}") from exc

    def quality_series(self) -> tuple[str, ...]:
        """The series named in quality_series_labels, in order, without repeats."""
        names = (name.strip() for name in self.quality_series_labels.split(","))
        return tuple(dict.fromkeys(name for name in names if name))

    def input_path(self) -> Path:
        return Path(self.input) if self.input else SAMPLE_TICKS


def load(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from a TOML file, the environment and explicit overrides, in that order."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_from_file(config_file))
    values.update(_from_environ(environ or {}))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return replace(Settings(), **values) if values else Settings()


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown settings {unknown}")
    return {name: _coerce(name, known[name].type, value) for name, value in data.items()}


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        f.name: _coerce(f.name, f.type, environ[ENV_PREFIX + f.name.upper()])
        for f in fields(Settings)
        if ENV_PREFIX + f.name.upper() in environ
    }


def _coerce(name: str, kind: Any, value: Any) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "bool":
            return _to_bool(value)
        if kind == "int" and not isinstance(value, bool):
            return int(value)
        if kind == "float" and not isinstance(value, bool):
            return float(value)
        if kind == "str":
            return str(value)
    except ValueError:
        pass
    raise ConfigError(f"{name} must be a {kind}, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)
