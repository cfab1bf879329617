from pathlib import Path

import pytest

from forecaster.config import ENV_PREFIX, Settings, load
from forecaster.errors import ConfigError
from tests.support.paths import README


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "forecaster.toml"
    config.write_text('cell = "gru"\nunits = 12\nrate = 10\nloop = false\n')
    settings = load(config, {"FORECASTER_UNITS": "24", "FORECASTER_LOOP": "yes"}, {"units": 48})
    assert (settings.cell, settings.units, settings.rate, settings.loop) == ("gru", 48, 10.0, True)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FORECASTER_UNITS": "many"}, "units must be a int"),
        ({"FORECASTER_LOOP": "maybe"}, "loop must be a bool"),
        ({"FORECASTER_CELL": "rnn"}, "cell must be one of"),
        ({"FORECASTER_METRICS_PORT": "70000"}, "metrics_port must be 0-65535"),
        ({"FORECASTER_RATE": "-1"}, "rate must be >= 0"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(environ=environ)


def test_unknown_keys_in_a_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("unit = 3\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load(config)


def test_readme_documents_every_setting() -> None:
    readme = README.read_text()
    for name in Settings.__dataclass_fields__:
        assert f"| `{name}` | `{ENV_PREFIX}{name.upper()}` |" in readme, name
