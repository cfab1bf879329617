"""What a retraining run came to, and how the service tells it: in its metrics (runs by
outcome, their duration, the last run's trigger, outcome and version, the last candidate's
holdout MAE and training losses) and one log line.

>>> from forecaster.ops.metrics import Metrics
>>> metrics = Metrics()
>>> report(Outcome("skipped", "interval", error="another instance holds the retrain lock"),
...        metrics, "the naive forecast")
>>> metrics.registry.get_sample_value("forecaster_retrains_total", {"outcome": "skipped"})
1.0
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from forecaster.ops.metrics import Metrics
from forecaster.retraining.gate import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one run, started by ``trigger``, came to: ``promoted``, ``rejected``, ``failed``
    or ``skipped`` (another instance retrains or just did; ``error`` says which)."""

    result: str
    trigger: str
    version: str | None = None
    verdict: Verdict | None = None
    error: str = ""
    seconds: float = 0.0


def report(outcome: Outcome, metrics: Metrics, serving: str) -> None:
    """Count and log ``outcome``; ``serving`` names what serves now (for the log)."""
    metrics.retrains.labels(outcome.result).inc()
    metrics.retrain_last_run.info(
        {"trigger": outcome.trigger, "outcome": outcome.result, "version": outcome.version or ""}
    )
    if outcome.verdict is not None:
        _show_verdict(metrics, outcome.verdict)
    if outcome.result == "skipped":  # a skipped run never ran: no duration
        log.info("retraining skipped: %s", outcome.error)
        return
    metrics.retrain_seconds.observe(outcome.seconds)
    if outcome.result == "failed":
        log.error("retraining failed (%s); %s keeps serving", outcome.error, serving)
        return
    reason = outcome.verdict.reason if outcome.verdict else ""
    after = (
        f"model {outcome.version} serves from the next batch"
        if outcome.result == "promoted"
        else f"{serving} keeps serving"
    )
    log.info("retraining %s %s after %.1f s: %s; %s", outcome.result, outcome.version,
             outcome.seconds, reason, after)  # fmt: skip


def show_training(metrics: Metrics, details: dict[str, Any]) -> None:
    """The training losses of a candidate's fit, from its details (``TrainReport``)."""
    training = details.get("training", {})
    if "train_loss" in training:
        metrics.retrain_training_loss.set(training["train_loss"])
    if "stopping_loss" in training:
        metrics.retrain_validation_loss.set(training["stopping_loss"])  # early stopping's


def _show_verdict(metrics: Metrics, verdict: Verdict) -> None:
    mae = metrics.retrain_holdout_mae
    mae.labels("candidate").set(verdict.candidate_mae)
    mae.labels("naive").set(verdict.naive_mae)
    mae.labels("serving").set(math.nan if verdict.serving_mae is None else verdict.serving_mae)
