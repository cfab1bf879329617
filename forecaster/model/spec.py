"""The model architecture, validated at construction.

>>> ModelSpec(cell="gru", layers=2, units=16).state_size
32
>>> ModelSpec(cell="rnn")
Traceback (most recent call last):
...
forecaster.errors.ConfigError: cell must be one of ('lstm', 'gru'), got 'rnn'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from forecaster.config import CELLS, Settings
from forecaster.core.features import FEATURE_NAMES
from forecaster.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """A stack of recurrent layers and a linear head predicting the next standardised return."""

    cell: str = Settings.cell
    layers: int = Settings.layers
    units: int = Settings.units
    n_features: int = len(FEATURE_NAMES)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if not 1 <= self.layers <= 8:
            raise ConfigError(f"layers must be 1-8, got {self.layers}")
        if not 1 <= self.units <= 1024:
            raise ConfigError(f"units must be 1-1024, got {self.units}")

    @property
    def vectors_per_layer(self) -> int:
        """Hidden and cell state for an LSTM, hidden state only for a GRU."""
        return 2 if self.cell == "lstm" else 1

    @property
    def state_size(self) -> int:
        return self.layers * self.vectors_per_layer * self.units

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
