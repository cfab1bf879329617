"""The commands on models: `models list|promote|rollback` on the registry, and `retrain`,
which asks a running service to train one now."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.cli.checks import existing_model_dir
from forecaster.cli.flags import EPILOG, MODEL_DIR_REQUIRED, UsageError, command, common
from forecaster.config import Settings
from forecaster.errors import ForecasterError

if TYPE_CHECKING:
    import urllib.error

    from forecaster.retraining.registry import Registry

_LIST_HEADER = (" ", "version", "created", "gate", "mase", "serving_mase",
                "shadow", "live_mase", "live_serving", "p")  # fmt: skip
_LIST_ALIGN = ("<", "<", "<", "<", ">", ">", "<", ">", ">", ">")


def add_models(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="list the model registry, promote a version, roll back",
        description="Work on the model registry in --model-dir: `list` shows every version "
        "(newest last) with its holdout figures and its shadow verdict (live MASE of it and "
        "of the model serving then, on the same ticks, and the p-value of the Diebold-Mariano "
        "test), `promote VERSION` makes it the version a service serves when it starts (no "
        "shadow), `rollback` promotes the previously promoted version "
        "again. A version whose files do not match their SHA-256 is refused.",
        epilog=EPILOG,
    )
    actions = models.add_subparsers(title="actions", metavar="ACTION", required=True)
    for name, run, text in (
        ("list", _list, "every version, newest last; * marks the promoted one"),
        ("promote", _promote, "promote VERSION"),
        ("rollback", _rollback, "promote the previously promoted version again"),
    ):
        action = actions.add_parser(name, help=text, description=text, epilog=EPILOG)
        if name == "promote":
            action.add_argument("version", metavar="VERSION")
        common(action, MODEL_DIR_REQUIRED)
        command(action, run)


def add_retrain(commands: Any) -> None:
    retrain = commands.add_parser(
        "retrain",
        help="ask a running service to retrain now",
        description="POST /retrain to a running service: it reads its training window at the "
        "next batch boundary, trains in the background, and swaps the result in only if it "
        "passes the holdout gate and, with promotion = shadow, its shadow on the live stream. "
        "Follow the outcome on forecaster_retrains_total. The service "
        "only takes it with its admin token (its FORECASTER_ADMIN_TOKEN), sent as a Bearer token.",
        epilog=EPILOG,
    )
    retrain.add_argument(
        "--url",
        default=f"http://localhost:{Settings.metrics_port}",
        help="the service's metrics address (default: %(default)s)",
    )
    retrain.add_argument(
        "--token",
        help="the service's admin token (default: FORECASTER_ADMIN_TOKEN, which is better: a "
        "flag shows in the process list)",
    )
    retrain.add_argument("--config", type=Path, help="TOML settings file")
    command(retrain, _retrain)


def _registry(settings: Settings, args: argparse.Namespace) -> Registry:
    from forecaster.retraining.registry import Registry

    return Registry(existing_model_dir(settings, args))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings, args)
    promoted = registry.promoted()
    rows = [_LIST_HEADER]
    for version in registry.versions():
        metadata = registry.metadata(version)
        checked = metadata.get("validation", {})
        decision = {True: "passed", False: "rejected"}.get(checked.get("promote"), "-")
        mase, serving = checked.get("candidate_mase"), checked.get("serving_mase")
        rows.append(("*" if version == promoted else " ", version, str(metadata["created"]),
                     decision, _figure(mase), _figure(serving),
                     *_shadow_cells(metadata.get("shadow", {}))))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(_LIST_HEADER))]
    for row in rows:
        cells = zip(row, widths, _LIST_ALIGN, strict=True)
        print(" ".join(f"{cell:{align}{width}}" for cell, width, align in cells).rstrip())
    return 0


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _shadow_cells(shadow: dict[str, Any]) -> tuple[str, str, str, str]:
    """The shadow verdict of a version: its outcome, both live MASEs, the DM p-value."""
    decision = "-" if "promote" not in shadow else "promoted" if shadow["promote"] else "rejected"
    p_value = shadow.get("p_value")
    shown_p = "-" if p_value is None else f"{p_value:.3g}"
    return (decision, _figure(shadow.get("candidate_mase")), _figure(shadow.get("serving_mase")),
            shown_p)  # fmt: skip


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.retraining.registry import check_version

    version = check_version(args.version)
    _registry(settings, args).promote(version)
    print(f"promoted {args.version}")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    print(f"promoted {_registry(settings, args).rollback()}")
    return 0


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    import urllib.error

    url, token = f"{args.url.rstrip('/')}/retrain", args.token or settings.admin_token
    if problem := _retrain_problem(url, token):
        raise UsageError(problem)
    try:
        print(_post(url, token))
    except urllib.error.HTTPError as answer:
        answer.close()
        raise ForecasterError(_refusal(args.url, answer, bool(token))) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ForecasterError(f"cannot reach {args.url}: {exc}") from None
    return 0


def _retrain_problem(url: str, token: str) -> str:
    """What keeps ``url`` and ``token`` from being sent ('' if nothing); never the token."""
    import urllib.parse

    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError as exc:
        return f"--url is no URL: {exc}"
    if scheme not in ("http", "https"):
        return f"--url must be http:// or https://, not {scheme or 'without a scheme'}"
    if token and not (token.isascii() and token.isprintable()):
        return "the admin token cannot be sent in an HTTP header: it must be printable ASCII"
    return ""


def _post(url: str, token: str) -> str:
    """POST ``url`` with ``token`` as Bearer token (if any); the answer's text. Redirects
    are not followed, so the token never goes anywhere but ``url``."""
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # the redirect becomes an HTTPError, reported as such

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    with urllib.request.build_opener(NoRedirects).open(request, timeout=10) as response:
        return str(response.read().decode(errors="replace").strip())


def _refusal(url: str, answer: urllib.error.HTTPError, sent_token: bool) -> str:
    """One line on why the service at ``url`` refused POST /retrain."""
    if answer.code == 401 and sent_token:
        return (f"the service at {url} refused the admin token (401): check --token or "
                "FORECASTER_ADMIN_TOKEN")  # fmt: skip
    if answer.code == 401:
        return (f"the service at {url} needs its admin token (401): pass --token or set "
                "FORECASTER_ADMIN_TOKEN")  # fmt: skip
    if answer.code == 403:
        return (f"POST /retrain is off at {url} (403): start the service with "
                "FORECASTER_ADMIN_TOKEN set")  # fmt: skip
    return f"{url} answered {answer.code} {answer.reason}"
