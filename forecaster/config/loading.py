"""Settings from defaults, then a TOML file, then ``FORECASTER_*`` environment variables,
then explicit overrides (the command line's flags).

>>> load(environ={"FORECASTER_METRICS_PORT": "9200"}).metrics_port
9200
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from forecaster.config.settings import Settings
from forecaster.errors import ConfigError

ENV_PREFIX = "FORECASTER_"


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
    """``value`` (a TOML value, or an environment variable's text) as a setting of type
    ``kind``; a TOML value of another type (a table, an array, 1.5 for an integer) is
    refused, not cast.

    >>> _coerce("max_batch", "int", "12"), _coerce("rate", "float", 3)
    (12, 3.0)
    """
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "bool" and isinstance(value, bool | str):
            return _to_bool(value)
        if kind == "int" and isinstance(value, int | str) and not isinstance(value, bool):
            return int(value)
        if kind == "float" and isinstance(value, int | float | str) and not isinstance(value, bool):
            return float(value)
        if kind == "str" and isinstance(value, str):
            return value
    except ValueError:
        pass
    article = "an" if kind == "int" else "a"
    raise ConfigError(f"{name} must be {article} {kind}, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)
