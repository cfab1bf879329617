"""Settings: defaults, then a TOML file, then ``FORECASTER_*`` environment variables, then flags.

Every setting is one flat field of :class:`Settings`, written there once with its
default, its meaning and the rule its value must hold; its environment variable is
``FORECASTER_`` plus the field name in capitals (``metrics_port`` ->
``FORECASTER_METRICS_PORT``), and a config file uses the field names as keys. Values are
validated when Settings is built. The package imports no part of the service: the parts
depend on it (``forecaster.params`` turns Settings into their arguments), not it on them.

>>> Settings(units=16).units
16
>>> load(environ={"FORECASTER_METRICS_PORT": "9200"}).metrics_port
9200
>>> Settings(cell="transformer")
Traceback (most recent call last):
...
forecaster.errors.ConfigError: cell must be one of ('lstm', 'gru'), got 'transformer'
"""

from forecaster.config.loading import ENV_PREFIX, load
from forecaster.config.settings import (
    CELLS,
    LOG_LEVELS,
    MAX_DEAD_LETTER_BYTES,
    MAX_LABELLED_SERIES,
    PROCESSING_GUARANTEES,
    SAMPLE_TICKS,
    SECURITY_PROTOCOLS,
    STATE_STORES,
    Settings,
)

__all__ = [
    "CELLS",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "MAX_DEAD_LETTER_BYTES",
    "MAX_LABELLED_SERIES",
    "PROCESSING_GUARANTEES",
    "SAMPLE_TICKS",
    "SECURITY_PROTOCOLS",
    "STATE_STORES",
    "Settings",
    "load",
]
