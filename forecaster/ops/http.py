"""The operator's HTTP endpoints, on a daemon thread: /metrics, /healthz and /readyz,
open to anyone, and POST /retrain, for the admin Bearer token only.

>>> from prometheus_client import CollectorRegistry
>>> app = http_app(CollectorRegistry(), lambda: (False, "restoring partition 3"))
>>> statuses: list[str] = []
>>> environ = {"PATH_INFO": "/readyz", "REQUEST_METHOD": "GET"}
>>> b"".join(app(environ, lambda status, headers: statuses.append(status)))
b'restoring partition 3\\n'
>>> statuses
['503 Service Unavailable']
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from forecaster.errors import ConfigError

log = logging.getLogger(__name__)

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
