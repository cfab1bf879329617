"""One look per row of the backtest (actual, naive, the baselines of forecasts and of
intervals, the oracle, each model), the same in every plot and in the report's tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Style:
    """How one row is drawn everywhere: line, retrain marker and table swatch."""

    color: str
    linestyle: str | tuple[float, tuple[float, ...]]
    linewidth: float
    alpha: float
    zorder: float
    marker: str = "D"  # marks the row's retrains (models), its points in the calibration plot

    def line(self) -> dict[str, Any]:
        return {
            "color": self.color,
            "linestyle": self.linestyle,
            "linewidth": self.linewidth,
            "alpha": self.alpha,
            "zorder": self.zorder,
        }


# Okabe-Ito colours (colour-blind safe). The models are drawn last: LSTM wide and
# translucent, GRU thin and dashed on top, so identical forecasts still show both.
STYLES = {
    "actual": Style("#000000", "-", 1.2, 1.0, 2.0),
    "naive": Style("#7f7f7f", (0, (6.0, 3.0)), 1.6, 1.0, 3.0),
    "drift": Style("#cc79a7", "-.", 1.2, 0.9, 3.1),
    "ewma": Style("#56b4e9", (0, (1.0, 1.5)), 1.4, 0.9, 3.2),
    "holt": Style("#e69f00", (0, (4.0, 1.5, 1.0, 1.5)), 1.2, 0.9, 3.3),
    "oracle": Style("#009e73", (0, (1.0, 1.0)), 2.2, 0.9, 4.0),
    "empirical": Style("#999933", (0, (5.0, 2.0)), 1.4, 0.9, 3.4, marker="o"),
    "riskmetrics": Style("#882255", (0, (2.0, 1.0, 2.0, 3.0)), 1.4, 0.9, 3.5, marker="P"),
    "lstm": Style("#0072b2", "-", 3.6, 0.65, 5.0, marker="v"),
    "gru": Style("#d55e00", (0, (3.0, 1.5)), 1.6, 1.0, 6.0, marker="^"),
}
OTHER = Style("#8c564b", (0, (5.0, 1.0, 1.0, 1.0, 1.0, 1.0)), 1.3, 1.0, 5.5, marker="s")


def style(row: str) -> Style:
    return STYLES.get(row, OTHER)


def label(row: str) -> str:
    return row.upper() if row in ("lstm", "gru") else row
