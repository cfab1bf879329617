"""Judging forecasts offline: point scores, synthetic streams with known oracles, and the
backtest."""
