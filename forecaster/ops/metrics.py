"""Prometheus metrics and the operator's HTTP endpoints: /metrics, /healthz, /readyz.

Each service owns one ``Metrics`` with its own CollectorRegistry (plus the client's
process and platform collectors), so tests can run several side by side. Names follow
the Prometheus conventions: ``forecaster_`` prefix, base units (seconds, ratios),
``_total`` on counters, and only bounded labels; every labelled counter is created
with all its known label values, so PromQL finds the series before the first event.

>>> metrics = Metrics()
>>> metrics.ticks_received.inc(3)
>>> metrics.registry.get_sample_value("forecaster_ticks_received_total")
3.0
>>> metrics.registry.get_sample_value("forecaster_retrains_total", {"outcome": "failed"})
0.0
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    make_wsgi_app,
)
from prometheus_client.registry import Collector

from forecaster.core.engine import NAIVE, ForecastBatch
from forecaster.core.ticks import RejectReason
from forecaster.errors import ConfigError
from forecaster.ops.quality import (
    DEFAULT_HALFLIFE,
    MAX_LABELLED_SERIES,
    Quality,
    RollingQuality,
    Sums,
)

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
CHECKPOINT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RETRAIN_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
FORECAST_KINDS = ("model", NAIVE)
RETRAIN_OUTCOMES = ("promoted", "rejected", "failed", "skipped")
PRODUCE_ERROR_KINDS = ("transient", "permanent")

_SUM_HELP = {
    "points": "Model forecasts scored against the price that followed them",
    "abs_error": "Sum of |forecast - price| / previous price over scored forecasts",
    "naive_abs_error": "Sum of |previous price - price| / previous price over scored forecasts",
    "squared_error": "Sum of ((forecast - price) / previous price)^2 over scored forecasts",
    "price_moves": "Scored forecasts after which the price moved",
    "direction_hits": "Scored forecasts that called the direction of a price move right",
}
_QUALITY_HELP = {
    "mae": "Rolling mean absolute error of model forecasts, relative to the previous price",
    "rmse": "Rolling root mean squared error of model forecasts, relative to the previous price",
    "mase": "Rolling model MAE over naive MAE on the same ticks (< 1: better than naive)",
    "directional_accuracy": "Rolling share of price moves whose direction the model called",
}


class Metrics:
    """The service's metrics, registered in one registry."""

    def __init__(
        self, quality_halflife: float = DEFAULT_HALFLIFE, quality_series: Sequence[str] = ()
    ) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
            self.registry.register(_Delegate(collector))
        self._define_ingestion()
        self._define_speed()
        self._define_kafka()
        self._define_model()
        self._define_checkpoints()
        self.forecast_quality = QualityMetrics(self.registry, quality_halflife, quality_series)

    def _define_ingestion(self) -> None:
        r = self.registry
        self.ticks_received = Counter(
            "forecaster_ticks_received", "Tick messages received from the source", registry=r
        )
        self.ticks_accepted = Counter(
            "forecaster_ticks_accepted", "Ticks accepted and stepped", registry=r
        )
        self.ticks_rejected = _counter_with_labels(
            "forecaster_ticks_rejected",
            "Ticks rejected to the dead-letter path, by rule broken",
            "reason",
            [reason.value for reason in RejectReason],
            r,
        )
        self.forecasts_emitted = _counter_with_labels(
            "forecaster_forecasts_emitted",
            "Forecasts written, by kind (model or naive)",
            "kind",
            FORECAST_KINDS,
            r,
        )
        self.forecasts_nonfinite = Counter(
            "forecaster_forecasts_nonfinite",
            "Model forecasts that were not finite and fell back to the naive forecast",
            registry=r,
        )
        self.batch_size = Histogram(
            "forecaster_batch_size_ticks",
            "Ticks per micro-batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.active_series = Gauge(
            "forecaster_active_series", "Series with state held by this instance", registry=r
        )
        self.series_created = Counter(
            "forecaster_series_created", "Series seen for the first time", registry=r
        )
        self.series_evicted = Counter(
            "forecaster_series_evicted", "Idle series whose state was dropped", registry=r
        )

    def _define_speed(self) -> None:
        self.step_seconds = Histogram(
            "forecaster_engine_step_seconds",
            "Time the engine takes to step one micro-batch",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tick_to_forecast_seconds = Histogram(
            "forecaster_tick_to_forecast_seconds",
            "Tick in to forecast out: from a batch's arrival to its sink acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _define_kafka(self) -> None:
        r = self.registry
        self.kafka_consumer_lag = Gauge(
            "forecaster_kafka_consumer_lag_messages",
            "Messages behind the end of each assigned input partition",
            ["partition"],
            registry=r,
        )
        self.kafka_commit_seconds = Histogram(
            "forecaster_kafka_commit_seconds",
            "Time to commit input offsets",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.kafka_produce_errors = _counter_with_labels(
            "forecaster_kafka_produce_errors",
            "Records the producer failed to deliver: transient (the batch is retried) or "
            "permanent (refused for good, dropped)",
            "kind",
            PRODUCE_ERROR_KINDS,
            r,
        )
        self.kafka_rejoins = Counter(
            "forecaster_kafka_rejoins",
            "Times the consumer joined its group again: a rebalance it saw begin never assigned",
            registry=r,
        )

    def _define_model(self) -> None:
        r = self.registry
        self.model_info = Info("forecaster_model", "The model version serving", registry=r)
        self.model_info.info({"version": NAIVE, "cell": "none"})
        self._model_loaded_at = math.nan
        self.model_age = Gauge(
            "forecaster_model_age_seconds",
            "Seconds since the serving model was swapped in (NaN while naive)",
            registry=r,
        )
        self.model_age.set_function(lambda: time.time() - self._model_loaded_at)
        self.retrains = _counter_with_labels(
            "forecaster_retrains", "Retraining runs, by outcome", "outcome", RETRAIN_OUTCOMES, r
        )
        self.retrain_seconds = Histogram(
            "forecaster_retrain_duration_seconds",
            "Wall time of a retraining run, data collection to outcome",
            buckets=RETRAIN_BUCKETS,
            registry=r,
        )
        self.retrain_training_loss = _nan_gauge(
            "forecaster_retrain_training_loss", "Training loss of the last retraining run", r
        )
        self.retrain_validation_loss = _nan_gauge(
            "forecaster_retrain_validation_loss", "Validation loss of the last retraining run", r
        )

    def _define_checkpoints(self) -> None:
        r = self.registry
        self._checkpoint_done_at = math.nan
        self.checkpoint_age = Gauge(
            "forecaster_checkpoint_age_seconds",
            "Seconds since the last successful state checkpoint (NaN before the first)",
            registry=r,
        )
        self.checkpoint_age.set_function(lambda: time.time() - self._checkpoint_done_at)
        self.checkpoint_seconds = Histogram(
            "forecaster_checkpoint_duration_seconds",
            "Time to write one state checkpoint",
            buckets=CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.checkpoint_failures = Counter(
            "forecaster_checkpoint_failures", "State checkpoints that failed", registry=r
        )
        self.checkpoint_refused = _counter_with_labels(
            "forecaster_checkpoint_refused",
            "Checkpoints refused at restore, by reason (unreadable, corrupt, incompatible)",
            "reason",
            ["unreadable", "corrupt", "incompatible"],
            r,
        )
        self.restoring_partitions = Gauge(
            "forecaster_state_restoring_partitions",
            "Assigned partitions whose state is being restored (their ticks wait; others flow)",
            registry=r,
        )
        self.restore_seconds = Histogram(
            "forecaster_state_restore_duration_seconds",
            "Time from a partition's assignment to its state restored (or found to be none)",
            buckets=CHECKPOINT_BUCKETS,
            registry=r,
        )

    def model_serving(self, version: str, cell: str) -> None:
        """Record that ``version`` serves from now on: its info labels, and its age from 0."""
        self.model_info.info({"version": version, "cell": cell})
        self._model_loaded_at = time.time()

    def checkpoint_completed(self, duration_seconds: float) -> None:
        """Record a successful checkpoint: its duration, and the checkpoint age from 0."""
        self.checkpoint_seconds.observe(duration_seconds)
        self._checkpoint_done_at = time.time()


class QualityMetrics:
    """Online forecast quality over all series, and per series for a few named ones.

    Plain sums go to counters (``forecaster_quality_*_total``) for PromQL windows; the
    rolling figures of ``RollingQuality`` go to ``forecaster_quality_*_ratio`` gauges, and
    for each of ``series`` (at most MAX_LABELLED_SERIES) to ``forecaster_series_quality_*``.
    """

    def __init__(self, registry: CollectorRegistry, halflife: float, series: Sequence[str]) -> None:
        if len(series) > MAX_LABELLED_SERIES:
            raise ConfigError(
                f"at most {MAX_LABELLED_SERIES} series may carry quality labels, got {len(series)}"
            )
        self.rolling = RollingQuality(halflife)
        self.by_series = {name: RollingQuality(halflife) for name in series}
        self.sums = {
            f.name: Counter(f"forecaster_quality_{f.name}", _SUM_HELP[f.name], registry=registry)
            for f in fields(Sums)
        }
        self.gauges = {
            name: _nan_gauge(f"forecaster_quality_{name}_ratio", text, registry)
            for name, text in _QUALITY_HELP.items()
        }
        self.series_gauges = {
            name: Gauge(
                f"forecaster_series_quality_{name}_ratio", text, ["series"], registry=registry
            )
            for name, text in _QUALITY_HELP.items()
        }
        for name in series:
            for gauge in self.series_gauges.values():
                gauge.labels(name).set(math.nan)

    def observe(self, batch: ForecastBatch) -> None:
        """Score the forecasts the prices of ``batch`` settle; update counters and gauges."""
        sums = self.rolling.update(batch)
        for f in fields(Sums):
            self.sums[f.name].inc(getattr(sums, f.name))
        self._show(self.rolling.get(), self.gauges)
        if self.by_series:
            self._observe_named_series(batch)

    def _observe_named_series(self, batch: ForecastBatch) -> None:
        rows: dict[str, list[int]] = {}
        for row, name in enumerate(batch.ticks.series):
            if name in self.by_series:
                rows.setdefault(name, []).append(row)
        for name, index in rows.items():
            rolling = self.by_series[name]
            rolling.add(
                batch.ticks.price[index],
                batch.previous_price[index],
                batch.previous_forecast[index],
            )
            self._show(rolling.get(), {k: g.labels(name) for k, g in self.series_gauges.items()})

    @staticmethod
    def _show(quality: Quality, gauges: dict[str, Gauge]) -> None:
        for name, gauge in gauges.items():
            gauge.set(getattr(quality, name))


def _counter_with_labels(
    name: str, documentation: str, label: str, values: Iterable[str], registry: CollectorRegistry
) -> Counter:
    counter = Counter(name, documentation, [label], registry=registry)
    for value in values:
        counter.labels(value)
    return counter


def _nan_gauge(name: str, documentation: str, registry: CollectorRegistry) -> Gauge:
    """A gauge that reads NaN, not a misleading 0, until first set."""
    gauge = Gauge(name, documentation, registry=registry)
    gauge.set(math.nan)
    return gauge


class _Delegate(Collector):
    """Registers a default collector in another registry without re-creating it."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Any]:
        return self.collector.collect()  # type: ignore[no-any-return]


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Readiness = Callable[[], tuple[bool, str]]


RETRAIN_OFF = (
    "POST /retrain is off: start the service with FORECASTER_ADMIN_TOKEN (admin_token) set to "
    "a secret, then send it as 'Authorization: Bearer <token>' (forecaster retrain --token, "
    "or FORECASTER_ADMIN_TOKEN)\n"
)
RETRAIN_UNAUTHORIZED = "POST /retrain needs 'Authorization: Bearer <admin token>'\n"


def http_app(
    registry: CollectorRegistry,
    ready: Readiness,
    retrain: Callable[[], str] | None = None,
    *,
    admin_token: str = "",
) -> WsgiApp:
    """/metrics (and /) from ``registry``; /healthz 200 while serving; /readyz asks ``ready``.

    Those are open to anyone, GET and HEAD only. POST /retrain calls ``retrain`` (202
    Accepted) for a request with ``Authorization: Bearer <admin_token>`` (compared in
    constant time); without it or with another token it answers 401, and while
    ``admin_token`` is empty 403: the endpoint is off. A readiness check that raises
    answers 503 with the error.
    """
    metrics_app = make_wsgi_app(registry)
    if retrain is not None and not admin_token:
        log.info("POST /retrain is off: set FORECASTER_ADMIN_TOKEN to turn it on")

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            is_ready, why = _readiness(ready)
            status = "200 OK" if is_ready else "503 Service Unavailable"
            return _text(start_response, status, why + "\n")
        if path in ("/metrics", "/"):
            # prometheus_client answers HEAD with 405: it gets a GET, whose body app() drops
            get = {**environ, "REQUEST_METHOD": "GET"}
            return metrics_app(get, start_response)  # type: ignore[no-any-return]
        return _text(start_response, "404 Not Found", "not found\n")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "POST" and environ.get("PATH_INFO") == "/retrain" and retrain is not None:
            return _post_retrain(environ, start_response, retrain, admin_token)
        if method not in ("GET", "HEAD"):
            return _text(
                start_response,
                "405 Method Not Allowed",
                "GET or HEAD only\n",
                [("Allow", "GET, HEAD")],
            )
        body = route(environ, start_response)
        return [] if method == "HEAD" else body

    return app


def _post_retrain(
    environ: dict[str, Any],
    start_response: Callable[..., Any],
    retrain: Callable[[], str],
    admin_token: str,
) -> list[bytes]:
    """POST /retrain: 403 while off, 401 without the admin token, else 202."""
    client = environ.get("REMOTE_ADDR", "?")
    if not admin_token:
        return _text(start_response, "403 Forbidden", RETRAIN_OFF)
    if not _bearer_matches(environ.get("HTTP_AUTHORIZATION", ""), admin_token):
        log.warning("POST /retrain from %s refused: no valid admin token", client)
        challenge = [("WWW-Authenticate", 'Bearer realm="forecaster"')]
        return _text(start_response, "401 Unauthorized", RETRAIN_UNAUTHORIZED, challenge)
    log.info("retraining requested over HTTP from %s", client)
    return _text(start_response, "202 Accepted", retrain() + "\n")


def _bearer_matches(authorization: str, token: str) -> bool:
    """Whether an Authorization header carries ``Bearer <token>``, compared in constant
    time; both sides are hashed first, so that not even the token's length leaks."""
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        presented = ""
    # WSGI hands header bytes over as latin-1 text: encoding it back gives the bytes sent.
    sent = hashlib.sha256(presented.strip().encode("latin-1", "replace")).digest()
    return hmac.compare_digest(sent, hashlib.sha256(token.encode()).digest())


def _readiness(ready: Readiness) -> tuple[bool, str]:
    try:
        return ready()
    except Exception as exc:  # a probe must answer, whatever the check ran into
        log.warning("readiness check failed", exc_info=True)
        return False, f"readiness check failed: {exc!r}"


def _text(
    start_response: Callable[..., Any],
    status: str,
    body: str,
    headers: Sequence[tuple[str, str]] = (),
) -> list[bytes]:
    data = body.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *headers,
        ],
    )
    return [data]


class _QuietHandler(WSGIRequestHandler):
    # A client that opens a connection and sends nothing must not hold a thread for ever.
    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class HttpServer:
    """The endpoints on a daemon thread; ``port`` 0 in the constructor picks a free port."""

    def __init__(self, app: WsgiApp, host: str, port: int) -> None:
        try:
            self._server: WSGIServer = make_server(
                host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
