"""The backtest: the service's replay path over a tick file, scored against honest baselines.

``run.backtest`` replays the file once per cell type, ``points`` lines the forecasts up
with the realised next prices (and the generator's oracle, when there is one),
``baselines`` adds the classical forecasters, ``evaluate`` scores every row and
``report`` writes ``metrics.json``, ``report.html`` and the PNGs. Prediction intervals
the same way: ``service_intervals`` recomputes the service's at any coverage,
``interval_baselines`` adds the classical ones and ``interval_evaluation`` scores them.
"""
