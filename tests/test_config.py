import subprocess
import sys
from dataclasses import fields
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
        ({"FORECASTER_UNITS": "many"}, "units must be an int"),
        ({"FORECASTER_LOOP": "maybe"}, "loop must be a bool"),
        ({"FORECASTER_CELL": "rnn"}, "cell must be one of"),
        ({"FORECASTER_METRICS_PORT": "70000"}, "metrics_port must be 0-65535"),
        ({"FORECASTER_RATE": "-1"}, "rate must be >= 0"),
        ({"FORECASTER_LAYERS": "9"}, "layers must be 1-8, got 9"),
        ({"FORECASTER_RING_LENGTH": "1"}, "ring_length must be >= 2"),
        ({"FORECASTER_RETRAIN_HOLDOUT": "1"}, "retrain_holdout must be in \\(0, 1\\)"),
        ({"FORECASTER_MAX_TS": "2200-01-01"}, "max_ts must be an RFC 3339 time with a zone"),
        ({"FORECASTER_MIN_TS": "1969-12-31T23:59:59Z"}, "min_ts must be .*, 1970 to 2262, got"),
        ({"FORECASTER_MIN_TS": "2250-01-01T00:00:00Z"}, "min_ts must be before max_ts"),
        ({"FORECASTER_MAX_PRICE": "1e-10"}, "min_price must be below max_price"),
        ({"FORECASTER_RETRAIN_CRON": "61 * * * *"}, "retrain_cron '61 \\* \\* \\* \\*' is not"),
        ({"FORECASTER_RATE": "inf"}, "rate must be a finite number, got inf"),
        ({"FORECASTER_INTERVAL_COVERAGE": "nan"}, "interval_coverage must be a finite number"),
        ({"FORECASTER_MAX_BATCH": str(10**30)}, "max_batch must be at most"),
        ({"FORECASTER_INPUT_TOPIC": ""}, "input_topic must be 1-249 of the characters"),
        ({"FORECASTER_DLQ_TOPIC": "dead\x00letters"}, "dlq_topic must be 1-249"),
        ({"FORECASTER_GROUP_ID": " "}, "group_id must be a text that is not empty"),
        (
            {"FORECASTER_RETRAIN_CRON": "0 * * * *", "FORECASTER_RETRAIN_INTERVAL_S": "60"},
            "set retrain_interval_s or retrain_cron, not both",
        ),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(environ=environ)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_batch = 1.5", "max_batch must be an int, got 1.5"),
        ("max_batch = true", "max_batch must be an int, got True"),
        ("[max_batch]\nx = 1", "max_batch must be an int, got {'x': 1}"),
        ('input_topic = ["ticks"]', "input_topic must be a str, got \\['ticks'\\]"),
        ("loop = 1", "loop must be a bool, got 1"),
        ("rate = inf", "rate must be a finite number, got inf"),
        ("rate = nan", "rate must be a finite number, got nan"),
    ],
)
def test_a_file_value_of_another_type_is_refused_not_cast(
    tmp_path: Path, line: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        load(config)


def test_unknown_keys_in_a_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("unit = 3\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load(config)


def test_readme_documents_every_setting() -> None:
    readme = README.read_text()
    for name in Settings.__dataclass_fields__:
        assert f"| `{name}` | `{ENV_PREFIX}{name.upper()}` |" in readme, name


def test_readme_shows_each_default_and_meaning_as_settings_has_them() -> None:
    readme = README.read_text()
    for setting in fields(Settings):
        name, default, meaning = setting.name, setting.default, setting.metadata["help"]
        row = f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `{default!r}` | {meaning} |"
        assert row in readme, row


def test_the_settings_import_no_part_of_the_service() -> None:
    """The parts depend on the configuration, never the other way round."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, forecaster.config; print(*sorted(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    ours = {name for name in imported if name.startswith("forecaster.")}
    neutral = {"forecaster.errors", "forecaster.timestamps"}
    assert ours - neutral == {name for name in ours if name.startswith("forecaster.config")}


def test_exactly_once_is_refused_without_the_changelog_state_store() -> None:
    environ = {"FORECASTER_PROCESSING_GUARANTEE": "exactly_once"}
    with pytest.raises(ConfigError, match="exactly_once needs state_store = kafka"):
        load(environ=environ)
    with pytest.raises(ConfigError, match="processing_guarantee must be one of"):
        Settings(processing_guarantee="exactly-once")
    settings = load(environ=environ | {"FORECASTER_STATE_STORE": "kafka"})
    assert settings.exactly_once() and not Settings().exactly_once()


def test_exactly_once_is_refused_on_the_confluent_client() -> None:
    environ = {"FORECASTER_PROCESSING_GUARANTEE": "exactly_once", "FORECASTER_STATE_STORE": "kafka"}
    with pytest.raises(ConfigError, match="exactly_once runs on kafka_client = kafka-python"):
        load(environ=environ | {"FORECASTER_KAFKA_CLIENT": "confluent"})
