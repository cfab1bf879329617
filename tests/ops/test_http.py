"""The HTTP endpoints: /metrics, /healthz, /readyz, and POST /retrain behind the admin token."""

import base64
import hmac
import io
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from forecaster.config import Settings
from forecaster.core.engine import Engine, EngineParams
from forecaster.errors import ConfigError
from forecaster.io.files import CsvSource, JsonLinesSink
from forecaster.ops.http import HttpServer, http_app
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import Pipeline
from forecaster.service import Service
from tests.support.replay_input import ReplayInput

Response = tuple[str, dict[str, str], bytes]


def call(
    app: Callable[..., Iterable[bytes]],
    path: str,
    method: str = "GET",
    authorization: str | None = None,
) -> Response:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def ready_app(ready: Callable[[], tuple[bool, str]]) -> Callable[..., Iterable[bytes]]:
    return http_app(Metrics().registry, ready)


def test_endpoints() -> None:
    app = ready_app(lambda: (True, "serving lstm-1"))
    assert call(app, "/healthz")[::2] == ("200 OK", b"ok\n")
    assert call(app, "/readyz")[::2] == ("200 OK", b"serving lstm-1\n")
    status, _, body = call(app, "/metrics")
    assert status == "200 OK" and b"forecaster_ticks_received_total 0.0" in body
    assert call(app, "/nowhere")[0] == "404 Not Found"


def test_not_ready_and_failing_readiness_answer_503() -> None:
    assert call(ready_app(lambda: (False, "no model")), "/readyz")[::2] == (
        "503 Service Unavailable",
        b"no model\n",
    )

    def broken() -> tuple[bool, str]:
        raise RuntimeError("source gone")

    status, _, body = call(ready_app(broken), "/readyz")
    assert status == "503 Service Unavailable" and b"source gone" in body


def test_only_get_and_head_are_served() -> None:
    app = ready_app(lambda: (True, "ok"))
    status, headers, _ = call(app, "/metrics", "POST")
    assert (status, headers["Allow"]) == ("405 Method Not Allowed", "GET, HEAD")
    status, headers, body = call(app, "/healthz", "HEAD")
    assert (status, headers["Content-Length"], body) == ("200 OK", "3", b"")


def test_http_server_serves_and_reports_a_busy_port() -> None:
    app = ready_app(lambda: (True, "ok"))
    server = HttpServer(app, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as r:
            assert r.read() == b"ok\n"
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{server.port}"):
            HttpServer(app, "127.0.0.1", server.port)
    finally:
        server.stop()


TOKEN = "s3cret-admin-token"


def retrain_app(token: str, calls: list[str]) -> Callable[..., Iterable[bytes]]:
    def retrain() -> str:
        calls.append("retrain")
        return "retraining requested"

    return http_app(Metrics().registry, lambda: (True, "ok"), retrain, admin_token=token)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN,
     f"Token {TOKEN}", "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()],
)  # fmt: skip
def test_post_retrain_without_the_admin_token_is_unauthorized(authorization: str | None) -> None:
    calls: list[str] = []
    status, headers, body = call(retrain_app(TOKEN, calls), "/retrain", "POST", authorization)
    assert status == "401 Unauthorized" and headers["WWW-Authenticate"].startswith("Bearer ")
    assert b"Authorization: Bearer" in body and TOKEN.encode() not in body
    assert calls == []


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer   {TOKEN} "])
def test_post_retrain_with_the_admin_token_is_accepted(authorization: str) -> None:
    calls: list[str] = []
    status, _, body = call(retrain_app(TOKEN, calls), "/retrain", "POST", authorization)
    assert (status, body, calls) == ("202 Accepted", b"retraining requested\n", ["retrain"])


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer anything"])
def test_post_retrain_is_off_while_no_admin_token_is_set(authorization: str | None) -> None:
    calls: list[str] = []
    status, _, body = call(retrain_app("", calls), "/retrain", "POST", authorization)
    assert status == "403 Forbidden" and b"is off" in body and b"FORECASTER_ADMIN_TOKEN" in body
    assert calls == []


def test_the_admin_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)
    app = retrain_app(TOKEN, [])
    assert call(app, "/retrain", "POST", "Bearer x")[0] == "401 Unauthorized"
    assert call(app, "/retrain", "POST", f"Bearer {TOKEN}")[0] == "202 Accepted"
    assert len(compared) == 2
    assert all(len(a) == len(b) == 32 for a, b in compared)  # digests: no length leaks


def test_the_read_only_endpoints_stay_open_with_an_admin_token() -> None:
    app = retrain_app(TOKEN, [])
    for path in ("/metrics", "/healthz", "/readyz", "/"):
        assert call(app, path)[0] == "200 OK", path
        assert call(app, path, "HEAD")[0] == "200 OK", path
    assert call(app, "/metrics", "POST", f"Bearer {TOKEN}")[0] == "405 Method Not Allowed"
    assert call(app, "/retrain", "GET", f"Bearer {TOKEN}")[0] == "404 Not Found"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_retrain(port: int, token: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/retrain", data=b"",
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refusal:
        refusal.close()
        return int(refusal.code)


def test_the_service_requires_its_admin_token_setting(replay: ReplayInput) -> None:
    engine = Engine(EngineParams())
    sink = JsonLinesSink(io.BytesIO(), io.BytesIO())
    pipeline = Pipeline(CsvSource(replay.path, max_batch=50), engine, sink, Metrics())
    settings = Settings(metrics_port=free_port(), metrics_host="127.0.0.1", admin_token=TOKEN)
    calls: list[str] = []

    def retrain() -> str:
        calls.append("retrain")
        return "requested"

    stop = threading.Event()
    service = Service(settings, pipeline, stop, retrain)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        statuses = []
        for token in ("wrong", TOKEN):
            status = 0
            for _ in range(100):  # until the server listens
                try:
                    status = post_retrain(settings.metrics_port, token)
                    break
                except OSError:
                    stop.wait(0.1)
            statuses.append(status)
    finally:
        stop.set()
        thread.join(60)
    assert statuses == [401, 202] and calls == ["retrain"]
