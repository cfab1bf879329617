"""What a Retrainer's runs came to, read as an operator reads it: from its metrics."""

from forecaster.ops.metrics import RETRAIN_OUTCOMES
from forecaster.retraining.coordinator import Retrainer


def runs(retrainer: Retrainer, outcome: str | None = None) -> float:
    """The runs counted with ``outcome`` (``forecaster_retrains_total``); all if None."""
    if outcome is None:
        return sum(runs(retrainer, each) for each in RETRAIN_OUTCOMES)
    value = retrainer.metrics.registry.get_sample_value(
        "forecaster_retrains_total", {"outcome": outcome}
    )
    assert value is not None
    return value


def runs_by_outcome(retrainer: Retrainer) -> dict[str, float]:
    return {outcome: runs(retrainer, outcome) for outcome in RETRAIN_OUTCOMES}


def only(**counts: float) -> dict[str, float]:
    """Runs by outcome when only those of ``counts`` happened, e.g. ``only(rejected=2)``."""
    return {outcome: counts.get(outcome, 0.0) for outcome in RETRAIN_OUTCOMES}


def last_run(retrainer: Retrainer) -> dict[str, str]:
    """The last run's trigger, outcome and version (``forecaster_retrain_last_run_info``)."""
    (metric,) = [
        metric
        for metric in retrainer.metrics.registry.collect()
        if metric.name == "forecaster_retrain_last_run"
    ]
    (sample,) = metric.samples
    return dict(sample.labels)


def holdout_mae(retrainer: Retrainer, model: str) -> float:
    """The last judged candidate's holdout MAE of ``model``: candidate, serving or naive."""
    value = retrainer.metrics.registry.get_sample_value(
        "forecaster_retrain_holdout_mae", {"model": model}
    )
    assert value is not None
    return value
