"""Prometheus metrics and the operator's HTTP endpoints: /metrics, /healthz, /readyz.

Each service owns one ``Metrics`` with its own CollectorRegistry (plus the client's
process and platform collectors), so tests can run several side by side.

>>> metrics = Metrics()
>>> metrics.ticks_received.inc(3)
>>> metrics.registry.get_sample_value("forecaster_ticks_received_total")
3.0
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
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

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class Metrics:
    """The service's metrics, registered in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
            self.registry.register(_Delegate(collector))
        r = self.registry
        self.ticks_received = Counter(
            "forecaster_ticks_received", "Tick messages received from the source", registry=r
        )
        self.ticks_accepted = Counter(
            "forecaster_ticks_accepted", "Ticks accepted and stepped", registry=r
        )
        self.ticks_rejected = Counter(
            "forecaster_ticks_rejected",
            "Ticks rejected to the dead-letter path, by rule broken",
            ["reason"],
            registry=r,
        )
        self.forecasts_emitted = Counter(
            "forecaster_forecasts_emitted",
            "Forecasts written, by kind (model or naive)",
            ["kind"],
            registry=r,
        )
        self.batch_size = Histogram(
            "forecaster_batch_size_ticks",
            "Ticks per micro-batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.step_seconds = Histogram(
            "forecaster_engine_step_seconds",
            "Time the engine takes to step one micro-batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "forecaster_batch_seconds",
            "Tick in to forecast out: from a batch's arrival to its sink acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.active_series = Gauge(
            "forecaster_active_series", "Series with state held by this instance", registry=r
        )
        self.series_created = Counter(
            "forecaster_series_created", "Series seen for the first time", registry=r
        )
        self.model_info = Info("forecaster_model", "The model version serving", registry=r)
        self.model_loaded_timestamp = Gauge(
            "forecaster_model_loaded_timestamp_seconds",
            "Unix time the serving model was swapped in",
            registry=r,
        )
        self.model_info.info({"version": "naive"})
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
        self.kafka_produce_errors = Counter(
            "forecaster_kafka_produce_errors", "Records the producer failed to deliver", registry=r
        )


class _Delegate(Collector):
    """Registers a default collector in another registry without re-creating it."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Any]:
        return self.collector.collect()  # type: ignore[no-any-return]


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def http_app(registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]]) -> WsgiApp:
    """/metrics from ``registry``; /healthz always 200 while serving; /readyz asks ``ready``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            is_ready, why = ready()
            return _text(
                start_response, "200 OK" if is_ready else "503 Service Unavailable", why + "\n"
            )
        if path in ("/metrics", "/"):
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        return _text(start_response, "404 Not Found", "not found\n")

    return app


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class HttpServer:
    """The endpoints on a daemon thread; ``port`` 0 in the constructor picks a free port."""

    def __init__(self, app: WsgiApp, host: str, port: int) -> None:
        self._server: WSGIServer = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
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
