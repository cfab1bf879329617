"""Keeping the model fresh: when to retrain, on what, and whether the result may serve.

The Retrainer is the pipeline's ``ModelUpdates``: at every batch boundary the pipeline
asks it for a model to swap in. A run goes

1. *when*: a manual request (``POST /retrain``, ``forecaster retrain``), ``every_ticks``
   warm steps, or an APScheduler interval/cron trigger. Live, the trigger runs on the
   wall clock in a BackgroundScheduler; in a replay it is evaluated on the ticks' own
   timestamps, so a replay retrains where a live run would have, every time.
2. *on what*: the first model (none serving yet) on every warm step seen so far, once
   there are ``bootstrap_steps``; later ones on the series' history rings. Either
   way through the training window (``forecaster.window``), read at the batch boundary.
3. *training*: the head of each series; the tail is held out. Live on a background
   thread (TensorFlow's pools bounded by the trainer) while ticks keep flowing; in a
   replay inline, at that batch boundary.
4. *the gate* (``forecaster.validation``): promoted only if better than the serving
   model and naive by ``margin`` on the holdout. Promoted or rejected, the version is
   saved to the registry with its figures; a promoted one is loaded back from disk and
   handed to the pipeline, which re-warms every series' state and swaps it between
   two batches.

Any failure (exception, NaN loss, non-finite forecasts, a corrupt artifact, a live run
exceeding ``timeout``) is logged and counted; the serving model keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.dataset import HistoryRecorder, Sequence, sequences_from_history
from forecaster.engine import Engine
from forecaster.errors import ConfigError
from forecaster.features import FeatureParams
from forecaster.metrics import Metrics
from forecaster.model.stepper import Stepper
from forecaster.registry import Registry
from forecaster.trainer import TrainedModel
from forecaster.validation import Validation, split_holdout, validate
from forecaster.window import WindowSpec, select_window

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Fit = Callable[[list[Sequence]], TrainedModel]

MIN_SERIES_STEPS = 4  # a series with fewer steps in the window can neither train nor score
NS = 1_000_000_000


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain and what a candidate must show; 0 / '' switches a trigger off."""

    interval_s: float = 0.0
    cron: str = ""
    every_ticks: int = 0
    bootstrap_steps: int = 20000
    window: WindowSpec = field(default_factory=WindowSpec)
    holdout: float = 0.2
    margin: float = 0.01
    timeout_s: float = 1800.0
    keep_versions: int = 10

    def __post_init__(self) -> None:
        if self.interval_s and self.cron:
            raise ConfigError("set retrain_interval or retrain_cron, not both")
        if self.interval_s < 0 or self.every_ticks < 0 or self.timeout_s <= 0:
            raise ConfigError("retrain_interval, retrain_every_ticks must be >= 0, timeout > 0")
        if self.window.ticks < 0 or self.window.seconds < 0:
            raise ConfigError("retrain_window_ticks and retrain_window_s must be >= 0")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"retrain_holdout must be in (0, 1), got {self.holdout}")
        if not -1 < self.margin < 1:
            raise ConfigError(f"retrain_margin must be in (-1, 1), got {self.margin}")
        if self.keep_versions < 2:
            raise ConfigError(f"keep_versions must be >= 2, got {self.keep_versions}")
        self.trigger(datetime.now(UTC))

    def trigger(self, start: datetime) -> Any:
        """The APScheduler trigger of the interval or cron setting (None if neither)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if self.interval_s:
            return IntervalTrigger(
                seconds=self.interval_s,
                start_date=start + timedelta(seconds=self.interval_s),
                timezone=UTC,
            )
        if self.cron:
            try:
                return CronTrigger.from_crontab(self.cron, timezone=UTC)
            except ValueError as exc:
                raise ConfigError(f"retrain_cron {self.cron!r} is not a crontab: {exc}") from exc
        return None


@dataclass(frozen=True)
class Outcome:
    """What one retraining run came to: ``promoted``, ``rejected`` or ``failed``."""

    outcome: str
    version: str | None
    validation: Validation | None
    error: str
    seconds: float


class DataClock:
    """The retraining trigger evaluated on tick timestamps instead of the wall clock."""

    def __init__(self, policy: RetrainPolicy) -> None:
        self.policy = policy
        self._trigger: Any = None
        self._next: datetime | None = None

    def due(self, newest_ts: int) -> bool:
        """True once per fire time the data's clock has passed (missed fires coalesce)."""
        if newest_ts <= 0 or not (self.policy.interval_s or self.policy.cron):
            return False
        now = datetime.fromtimestamp(newest_ts / NS, UTC)
        if self._trigger is None:
            self._trigger = self.policy.trigger(now)
            self._next = self._trigger.get_next_fire_time(None, now)
            return False
        if self._next is None or now < self._next:
            return False
        self._next = self._trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        return True


class Retrainer:
    """Decides, runs and gates retraining; hands promoted models to the pipeline."""

    def __init__(
        self,
        engine: Engine,
        fit: Fit,
        policy: RetrainPolicy,
        features: FeatureParams,
        *,
        registry: Registry | None = None,
        metrics: Metrics | None = None,
        background: bool = True,
    ) -> None:
        self.engine = engine
        self.fit = fit
        self.policy = policy
        self.features = features
        self.registry = registry
        self.metrics = metrics or Metrics()
        self.background = background
        self.outcomes: list[Outcome] = []
        self._bootstrap: HistoryRecorder | None = (
            HistoryRecorder() if engine.model is None else None
        )
        self._bootstrap_at = policy.bootstrap_steps
        self._clock = DataClock(policy)
        self._steps_since = 0
        self._newest_ts = 0
        self._requested = threading.Event()
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._ready: Stepper | None = None
        self._scheduler: Any = None
        engine.recorder = self.record

    def record(self, slots: IntArray, z: FloatArray, d: FloatArray, ts: IntArray) -> None:
        """The engine's StepRecorder: counts warm steps, keeps the first model's data."""
        self._steps_since += len(slots)
        self._newest_ts = max(self._newest_ts, int(ts.max(initial=0)))
        if self._bootstrap is not None:
            self._bootstrap(slots, z, d, ts)

    @property
    def running(self) -> bool:
        """A run started and its outcome not collected yet (or it timed out, still going)."""
        return self._job is not None

    def request(self) -> str:
        """Ask for a retraining run at the next batch boundary (manual trigger)."""
        self._requested.set()
        return "retraining requested: it starts at the next batch boundary"

    def start(self) -> None:
        """Run the interval/cron trigger on the wall clock (live service)."""
        trigger = self.policy.trigger(datetime.now(UTC))
        if trigger is None:
            return
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.add_job(self.request, trigger, id="retrain", coalesce=True, max_instances=1)
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def pending(self) -> Stepper | None:
        """Called at each batch boundary: the new model to swap in, if one is ready."""
        self._collect()
        if self._ready is None and self._job is None and self._due():
            self._launch()
            self._collect()  # a run inline (replay) is already done
        model, self._ready = self._ready, None
        return model

    def _due(self) -> bool:
        # Live, APScheduler fires on the wall clock (and calls request); in a replay the
        # same trigger fires on the data's clock.
        clock_fired = not self.background and self._clock.due(self._newest_ts)
        requested = self._requested.is_set()
        if self._bootstrap is not None:  # no model yet: the first one waits for its data
            return requested or self._bootstrap.steps >= self._bootstrap_at
        counted = 0 < self.policy.every_ticks <= self._steps_since
        return requested or clock_fired or counted

    def _launch(self) -> None:
        """Read the window (on the pipeline thread, between batches) and start a run."""
        self._requested.clear()
        self._steps_since = 0
        if self._bootstrap is not None:
            sequences = self._bootstrap.sequences()
        else:
            table = self.engine.table
            sequences = sequences_from_history(table.history(np.sort(table.active_slots())))
        window = select_window(sequences, self.policy.window, MIN_SERIES_STEPS)
        job = _Job(self, window.sequences, window.summary, self.engine.model)
        self._job = job
        if self.background:
            job.thread = threading.Thread(target=job.run, name="retrain", daemon=True)
            job.thread.start()
        else:
            job.run()

    def _collect(self) -> None:
        """Take the outcome of a finished run, or fail a live run that ran out of time."""
        job = self._job
        if job is None:
            return
        if job.thread is not None and job.thread.is_alive():
            if not job.abandoned and time.monotonic() - job.started > self.policy.timeout_s:
                job.abandoned = True
                self._finish(job, _failure(job, f"timed out after {self.policy.timeout_s:g} s"))
            return
        self._job = None
        if not job.abandoned and job.outcome is not None:
            self._finish(job, job.outcome)

    def _finish(self, job: _Job, outcome: Outcome) -> None:
        m = self.metrics
        m.retrains.labels(outcome.outcome).inc()
        m.retrain_seconds.observe(outcome.seconds)
        self.outcomes.append(outcome)
        if outcome.outcome == "failed":
            log.error("retraining failed (%s); the serving model keeps serving", outcome.error)
        else:
            reason = outcome.validation.reason if outcome.validation else ""
            log.info("retraining %s %s: %s", outcome.outcome, outcome.version, reason)
        if outcome.outcome == "promoted":
            self._ready = job.promoted
            self._bootstrap = None
        elif self._bootstrap is not None:
            self._bootstrap_at = 2 * self._bootstrap.steps
            log.warning("no first model yet; next try after %d warm steps", self._bootstrap_at)

    def publish(
        self, trained: TrainedModel, validation: Validation, window: dict[str, Any]
    ) -> tuple[str, Stepper | None]:
        """Record the candidate (and promote it if it passed): its name and what to serve."""
        details = {
            **trained.details,
            "data_window": window,
            "validation": validation.to_dict(),
            "retraining": {"holdout": self.policy.holdout, "margin": self.policy.margin},
        }
        registry = self.registry
        if registry is None:
            return trained.stepper.version, trained.stepper if validation.promote else None
        version = registry.save(trained.stepper, self.features, details, trained.keras_model)
        if not validation.promote:
            registry.prune(self.policy.keep_versions)
            return version, None
        serving = registry.load(version, self.features).stepper  # what a restart would serve
        registry.promote(version)
        registry.prune(self.policy.keep_versions)
        return version, serving


@dataclass
class _Job:
    """One retraining run: the data it was given, and where it got to."""

    retrainer: Retrainer
    sequences: list[Sequence]
    window: dict[str, Any]
    serving: Stepper | None
    started: float = field(default_factory=time.monotonic)
    thread: threading.Thread | None = None
    abandoned: bool = False
    outcome: Outcome | None = None
    promoted: Stepper | None = None

    def run(self) -> None:
        r = self.retrainer
        try:
            holdout = split_holdout(self.sequences, r.policy.holdout)
            trained = r.fit(holdout.fit)
            _show_losses(r.metrics, trained.details)
            validation = validate(trained.stepper, self.serving, holdout, r.policy.margin)
            version, self.promoted = r.publish(trained, validation, self.window)
        except Exception as exc:  # whatever a run runs into, the serving model must keep serving
            self.outcome = _failure(self, f"{type(exc).__name__}: {exc}")
            return
        decision = "promoted" if self.promoted is not None else "rejected"
        self.outcome = Outcome(decision, version, validation, "", time.monotonic() - self.started)


def _failure(job: _Job, error: str) -> Outcome:
    return Outcome("failed", None, None, error, time.monotonic() - job.started)


def _show_losses(metrics: Metrics, details: dict[str, Any]) -> None:
    training = details.get("training", {})
    if "train_loss" in training:
        metrics.retrain_training_loss.set(training["train_loss"])
    if "valid_loss" in training:
        metrics.retrain_validation_loss.set(training["valid_loss"])
