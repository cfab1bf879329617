"""Keeping the model fresh: when to retrain, on what, and whether the result may serve.

The Retrainer is the pipeline's ``ModelUpdates``: at every batch boundary the pipeline
asks it for a model to swap in. A run goes

1. *when*: a manual request (``POST /retrain``, ``forecaster retrain``), ``every_ticks``
   warm steps, or an APScheduler interval/cron trigger. Live, the trigger runs on the
   wall clock in a BackgroundScheduler; in a replay it is evaluated on the ticks' own
   timestamps, so a replay retrains where a live run would have, every time.
2. *on what*: the first model (none serving yet) on every warm step seen so far, once
   there are ``bootstrap_steps``; later ones on the series' history rings. Either
   way through the history window (``forecaster.retraining.window``), read at the batch boundary.
3. *training* (``forecaster.retraining.child``): fit on the head of each series, the
   tail held out. Live in a spawned child process (niced, TensorFlow's threads
   bounded) while ticks keep flowing, polled at batch boundaries; in a replay inline,
   at that batch boundary.
4. *the gate* (``forecaster.retraining.gate``, in the same process as the fit): its verdict
   promotes only a candidate better than the serving model and naive by ``margin`` on the
   holdout.
   Promoted or rejected, the version is saved to the registry with its figures; a
   promoted one is loaded back from disk (without TensorFlow) and handed to the
   pipeline, which re-warms every series' state and swaps it between two batches.

Any failure (exception, NaN loss, non-finite forecasts, a corrupt artifact, a child
process that crashes or is killed, a live run exceeding ``timeout``, which terminates
it) is logged and counted; the serving model keeps serving.

Several instances on one registry (live): a run first takes the registry's retrain lock
and holds it from the fit to the promotion; while another instance holds it, the run is
*skipped* (counted). A run of the interval/cron trigger is skipped too when any instance
started one less than ``RECENT_SHARE`` of the trigger's period ago, so N instances
retrain once per period, not N times. Every ``registry_poll_s`` an instance compares
the registry's promoted version with the one it serves and, if they differ (another
instance promoted, or a ``forecaster models`` promote or rollback), loads it and hands
it to the pipeline like a promotion of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.config import Settings
from forecaster.core.engine import Engine
from forecaster.core.features import FeatureParams
from forecaster.errors import ArtifactError, ConfigError
from forecaster.faults import internal_error_detail
from forecaster.model.stepper import Stepper
from forecaster.ops.metrics import Metrics
from forecaster.retraining.child import Candidate, TrainingJob, TrainingProcess, run_job
from forecaster.retraining.dataset import HistoryRecorder, Sequence, sequences_from_history
from forecaster.retraining.gate import Verdict
from forecaster.retraining.registry import Registry, RetrainLock
from forecaster.retraining.trainer import Fit, NamedFit
from forecaster.retraining.window import WindowSpec, select_window

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MIN_SERIES_STEPS = 4  # a series with fewer steps in the window can neither train nor score
NS = 1_000_000_000
RECENT_SHARE = 0.9  # a scheduled run this close (in periods) after any instance's run is skipped
CRON_FIRES_SCANNED = 32  # the fires of a crontab searched for its shortest period


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain and what a candidate must show; 0 / '' switches a trigger off."""

    interval_s: float = Settings.retrain_interval_s
    cron: str = Settings.retrain_cron
    every_ticks: int = Settings.retrain_every_ticks
    bootstrap_steps: int = Settings.bootstrap_steps
    window: WindowSpec = field(default_factory=WindowSpec)
    holdout: float = Settings.retrain_holdout
    margin: float = Settings.retrain_margin
    timeout_s: float = Settings.retrain_timeout_s
    keep_versions: int = Settings.keep_versions
    registry_poll_s: float = Settings.registry_poll_s

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
        if self.registry_poll_s < 0:
            raise ConfigError(f"registry_poll_s must be >= 0, got {self.registry_poll_s}")
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

    def period_s(self) -> float:
        """The shortest time between two fires of the interval or cron trigger (0: neither).

        >>> RetrainPolicy(cron="0 9,10 * * *").period_s()
        3600.0
        """
        if not self.cron:
            return self.interval_s
        now = datetime.now(UTC)
        trigger = self.trigger(now)
        fires = [trigger.get_next_fire_time(None, now)]
        for _ in range(CRON_FIRES_SCANNED):
            fires.append(
                trigger.get_next_fire_time(fires[-1], fires[-1] + timedelta(microseconds=1))
            )
        return min(float((later - earlier).total_seconds()) for earlier, later in pairwise(fires))


@dataclass(frozen=True)
class Outcome:
    """What one retraining run came to: ``promoted``, ``rejected``, ``failed`` or
    ``skipped`` (another instance retrains or just did; ``error`` says which)."""

    outcome: str
    version: str | None
    verdict: Verdict | None
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
    """Decides, runs and gates retraining; hands promoted models to the pipeline.

    ``background`` (live): each run is a ``TrainingProcess``, so ``fit`` must be a
    ``NamedFit`` the child can rebuild, it holds the registry's retrain lock, and the
    registry is followed for versions other instances promote; otherwise (a replay)
    ``fit`` is called inline, without the lock, and the registry is not followed.
    """

    def __init__(
        self,
        engine: Engine,
        fit: Fit,
        policy: RetrainPolicy,
        features: FeatureParams,
        *,
        registry: Registry | None = None,
        metrics: Metrics,
        background: bool = True,
    ) -> None:
        if background and not isinstance(fit, NamedFit):
            raise ConfigError("a background Retrainer fits in a child process: give it a NamedFit")
        self.engine = engine
        self.fit = fit
        self.policy = policy
        self.features = features
        self.registry = registry
        self.metrics = metrics
        self.background = background
        self.outcomes: list[Outcome] = []
        self.training: TrainingProcess | None = None  # the live run in its child process
        self._bootstrap: HistoryRecorder | None = (
            HistoryRecorder.for_bootstrap(policy.bootstrap_steps) if engine.model is None else None
        )
        self._bootstrap_at = policy.bootstrap_steps
        self._clock = DataClock(policy)
        self._steps_since = 0
        self._newest_ts = 0
        self._requested = threading.Event()
        self._fired = threading.Event()  # the live interval/cron trigger fired
        self._period_s = policy.period_s()
        self._lock: RetrainLock | None = None
        self._next_poll = 0.0
        self._refused: str | None = None  # a promoted version that could not serve here
        self._refusal = ""  # the last reason the registry's promotion was not taken up
        self._ready: Stepper | None = None
        self._scheduler: Any = None
        engine.recorder = self.record

    def record(self, series: IntArray, z: FloatArray, d: FloatArray, ts: IntArray) -> None:
        """The engine's StepRecorder (at each commit): counts warm steps, keeps the first
        model's data (the newest ``BOOTSTRAP_HEADROOM`` x ``bootstrap_steps`` of them)."""
        self._steps_since += len(series)
        self._newest_ts = max(self._newest_ts, int(ts.max(initial=0)))
        if self._bootstrap is not None:
            self._bootstrap(series, z, d, ts)

    @property
    def running(self) -> bool:
        """A live run started and its outcome not collected yet."""
        return self.training is not None

    def request(self) -> str:
        """Ask for a retraining run at the next batch boundary (manual trigger)."""
        self._requested.set()
        return "retraining requested: it starts at the next batch boundary"

    def schedule_fired(self) -> None:
        """What the wall-clock trigger calls: a run at the next batch boundary, skipped if
        any instance on the registry started one less than RECENT_SHARE periods ago."""
        self._fired.set()

    def start(self) -> None:
        """Run the interval/cron trigger on the wall clock (live service)."""
        trigger = self.policy.trigger(datetime.now(UTC))
        if trigger is None:
            return
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.add_job(
            self.schedule_fired, trigger, id="retrain", coalesce=True, max_instances=1
        )
        self._scheduler.start()

    def stop(self) -> None:
        """Stop the trigger and end a running training process (service shutdown)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self.training is not None:
            log.info("stopping the retraining process %s", self.training.pid)
            self.training.stop()
            self.training = None
        self._release()

    def pending(self) -> Stepper | None:
        """Called at each batch boundary: the new model to swap in, if one is ready."""
        self._collect()
        if self._ready is None and self.training is None and (reason := self._due()):
            self._launch(reason)
        if self._ready is None:
            self._follow_registry()
        model, self._ready = self._ready, None
        return model

    def _due(self) -> str:
        """Why a run is due now ('' if it is not): requested, schedule, ticks or bootstrap."""
        # Live, APScheduler fires on the wall clock (and calls schedule_fired); in a replay
        # the same trigger fires on the data's clock.
        clock_fired = not self.background and self._clock.due(self._newest_ts)
        if self._requested.is_set():
            return "requested"
        if self._bootstrap is not None:  # no model yet: the first one waits for its data
            return "bootstrap" if self._bootstrap.steps >= self._bootstrap_at else ""
        if clock_fired or self._fired.is_set():
            return "schedule"
        return "ticks" if 0 < self.policy.every_ticks <= self._steps_since else ""

    def _launch(self, reason: str) -> None:
        """Read the window (on the pipeline thread, between batches) and start a run."""
        self._requested.clear()
        self._fired.clear()
        self._steps_since = 0
        started = time.monotonic()
        if self.background and self.registry is not None and not self._take_lock(reason):
            return
        log.info("retraining started (trigger: %s) while %s serves", reason, self._serving())
        try:
            window = select_window(self._sequences(), self.policy.window, MIN_SERIES_STEPS)
            job = TrainingJob(self.policy.holdout, self.policy.margin, self.features,
                              window.summary, self.registry)  # fmt: skip
            serving = self.engine.model
            if isinstance(self.fit, NamedFit) and self.background:
                self.training = TrainingProcess(job, self.fit, window.sequences, serving)
                return
            self._judge(run_job(job, self.fit, window.sequences, serving), started)
        except Exception as exc:  # whatever a run runs into, the serving model must keep serving
            self._release()
            self._failed(internal_error_detail(exc), started)

    def _serving(self) -> str:
        """What serves now, for the log: a model version, or the naive forecast."""
        model = self.engine.model
        return f"model {model.version}" if model is not None else "the naive forecast"

    def _sequences(self) -> list[Sequence]:
        """What a run trains on: every warm step so far for the first model, else the rings."""
        if self._bootstrap is not None:
            return self._bootstrap.sequences()
        table = self.engine.table
        return sequences_from_history(table.history(np.sort(table.active_slots())))

    def _take_lock(self, reason: str) -> bool:
        """Take the registry's retrain lock for this run; False (run skipped) if another
        instance holds it, or for a scheduled run if any instance ran less than
        RECENT_SHARE periods ago. Held until the run's outcome is in."""
        registry = self.registry
        assert registry is not None
        try:
            self._lock = registry.retrain_lock()
            if self._lock is None:
                self._skipped("another instance holds the retrain lock")
                return False
            last = _last_start(registry) if reason == "schedule" else None
            ago = time.time() - last if last is not None else float("inf")
            # abs: a start a little ahead is another instance's clock; far ahead, a bad record
            if abs(ago) < RECENT_SHARE * self._period_s:
                self._release()
                self._skipped(f"a retraining run started {ago:.0f} s ago")
                return False
            registry.record_retrain_start(time.time())
        except ArtifactError as exc:
            self._release()
            self._failed(str(exc), time.monotonic())
            return False
        return True

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _follow_registry(self) -> None:
        """Every registry_poll_s (live): take up the promoted version if it is not the one
        serving (another instance promoted it, or an operator promoted or rolled back)."""
        registry, poll_s = self.registry, self.policy.registry_poll_s
        now = time.monotonic()
        if not self.background or registry is None or not poll_s or now < self._next_poll:
            return
        self._next_poll = now + poll_s
        serving = self.engine.model.version if self.engine.model is not None else None
        try:
            promoted = registry.promoted()
            if promoted is None or promoted in (serving, self._refused):
                return
            self._refused = promoted  # until it loaded: its load is not tried again
            self._ready = registry.load(promoted, self.features).stepper
        except ArtifactError as exc:
            if str(exc) != self._refusal:  # logged once, not at every poll
                log.error("cannot take up the promoted model (%s); serving %s still", exc, serving)
            self._refusal = str(exc)
            return
        self._refused, self._refusal = None, ""
        self._bootstrap = None
        log.info("taking up model %s, promoted in %s", promoted, registry.root)

    def _collect(self) -> None:
        """Judge the result of a finished training process, or stop one out of time."""
        training = self.training
        if training is None:
            return
        if not training.finished():
            if time.monotonic() - training.started > self.policy.timeout_s:
                training.stop()
                self.training = None
                self._release()
                self._failed(f"timed out after {self.policy.timeout_s:g} s", training.started)
            return
        self.training = None
        try:
            self._judge(training.result(), training.started)
        except Exception as exc:
            self._failed(internal_error_detail(exc), training.started)
        finally:
            training.stop()
            self._release()

    def _judge(self, candidate: Candidate, started: float) -> None:
        """Promote a candidate that passed the gate (loaded back as a restart would)."""
        _show_losses(self.metrics, candidate.details)
        registry, version = self.registry, candidate.version
        if not candidate.verdict.promote:
            self._prune()
            self._finish(Outcome("rejected", version, candidate.verdict, "", _since(started)))
            return
        serving = candidate.stepper
        if registry is not None:
            serving = registry.load(version, self.features).stepper
            registry.promote(version)
            self._prune()
        self._ready = serving
        self._bootstrap = None
        self._finish(Outcome("promoted", version, candidate.verdict, "", _since(started)))

    def _prune(self) -> None:
        """Keep the registry to keep_versions; a failure is only logged, since the run's
        outcome (its version saved, maybe promoted) stands."""
        if self.registry is None:
            return
        try:
            self.registry.prune(self.policy.keep_versions)
        except ArtifactError as exc:
            log.warning("cannot prune the model registry: %s", exc)

    def _failed(self, error: str, started: float) -> None:
        self._finish(Outcome("failed", None, None, error, _since(started)))

    def _skipped(self, why: str) -> None:
        self._finish(Outcome("skipped", None, None, why, 0.0))

    def _finish(self, outcome: Outcome) -> None:
        m = self.metrics
        m.retrains.labels(outcome.outcome).inc()
        self.outcomes.append(outcome)
        if outcome.outcome != "skipped":  # a skipped run never ran: no duration
            m.retrain_seconds.observe(outcome.seconds)
        if outcome.outcome == "skipped":
            log.info("retraining skipped: %s", outcome.error)
        elif outcome.outcome == "failed":
            log.error("retraining failed (%s); %s keeps serving", outcome.error, self._serving())
        else:
            reason = outcome.verdict.reason if outcome.verdict else ""
            serving = (
                f"model {outcome.version} serves from the next batch"
                if outcome.outcome == "promoted"
                else f"{self._serving()} keeps serving"
            )
            log.info("retraining %s %s after %.1f s: %s; %s", outcome.outcome,
                     outcome.version, outcome.seconds, reason, serving)  # fmt: skip
        if outcome.outcome != "promoted" and self._bootstrap is not None:
            self._bootstrap_at = 2 * self._bootstrap.steps
            log.warning("no first model yet; next try after %d warm steps", self._bootstrap_at)


def _last_start(registry: Registry) -> float | None:
    """When any instance last started a run; None, with a warning, if the record is
    unreadable (this run then writes a good one)."""
    try:
        return registry.last_retrain_start()
    except ArtifactError as exc:
        log.warning("%s; taken as no recent run", exc)
        return None


def _since(started: float) -> float:
    return time.monotonic() - started


def _show_losses(metrics: Metrics, details: dict[str, Any]) -> None:
    training = details.get("training", {})
    if "train_loss" in training:
        metrics.retrain_training_loss.set(training["train_loss"])
    if "stopping_loss" in training:
        metrics.retrain_validation_loss.set(training["stopping_loss"])  # early stopping's
