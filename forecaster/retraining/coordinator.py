"""Keeping the model fresh: the Retrainer, the pipeline's ``ModelUpdates``.

At every batch boundary the pipeline asks it for a model to swap in. A run goes

1. *when* (``forecaster.retraining.triggers``): a manual request, the bootstrap (no model
   yet), the interval/cron schedule, or ``every_ticks`` warm steps, counted by the
   engine's ``StepFeed`` (``forecaster.retraining.feed``).
2. *on what* (``forecaster.retraining.window``): the first model on the warm steps the
   feed recorded, later ones on the series' history rings; either way cut to the history
   window, read at the batch boundary.
3. *where* (``forecaster.retraining.child``): fit on the head of each series and judged
   on the tail by the gate (``forecaster.retraining.gate``); live in a child process
   while ticks keep flowing, polled at batch boundaries; in a replay inline.
4. *what it comes to* (``forecaster.retraining.promotion``): promoted, the candidate is
   handed to the pipeline; rejected, the serving model serves on. Either way the
   version is saved to the registry with its figures; the outcome is counted and logged
   (``forecaster.retraining.outcome``).
5. *shadow* (``forecaster.retraining.shadow``, ``promotion = "shadow"``): a candidate
   that passed the gate while a model serves is first stepped beside it on the live
   stream (the run's outcome: ``shadowed``) and promoted or rejected on its live figures,
   recorded in its metadata under ``shadow``. No run starts while one is in shadow (its
   trigger waits), and a live instance keeps its turn on the registry until the verdict.
   The first model (nothing serves but naive) is promoted on the gate alone.

Each trigger, outcome and shadow verdict also goes, with its tick time, to ``events``
when given (``forecaster.retraining.events``: a replay's record for the backtest).

Any failure (exception, NaN loss, non-finite forecasts, a corrupt artifact, a child
process that crashes or is killed, a live run exceeding ``timeout``, which terminates
it) is logged and counted; the serving model keeps serving. Live, several instances on
one registry take turns to retrain and follow each other's promotions
(``forecaster.retraining.sharing``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from forecaster.config import Settings
from forecaster.core.engine import Engine, ForecastBatch
from forecaster.core.features import FeatureParams
from forecaster.errors import ArtifactError, ConfigError
from forecaster.faults import internal_error_detail
from forecaster.model.stepper import Stepper
from forecaster.ops.metrics import Metrics
from forecaster.retraining.child import Candidate, Execution, Finished, TrainingJob
from forecaster.retraining.dataset import Sequence, sequences_from_history
from forecaster.retraining.decay import DecayMonitor, DecayPolicy
from forecaster.retraining.events import EventSink, RetrainEvent
from forecaster.retraining.feed import StepFeed
from forecaster.retraining.gate import Verdict
from forecaster.retraining.outcome import Outcome, report, show_training
from forecaster.retraining.promotion import Promotion
from forecaster.retraining.registry import Registry
from forecaster.retraining.shadow import ShadowPolicy, ShadowTrial, ShadowVerdict
from forecaster.retraining.sharing import RegistryFollower, Turns
from forecaster.retraining.trainer import Fit
from forecaster.retraining.triggers import Schedule, Triggers
from forecaster.retraining.window import WindowSpec, select_window

log = logging.getLogger(__name__)

MIN_SERIES_STEPS = 4  # a series with fewer steps in the window can neither train nor score


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
    decay: DecayPolicy = field(default_factory=DecayPolicy)
    shadow: ShadowPolicy = field(default_factory=ShadowPolicy)

    def __post_init__(self) -> None:
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
        Schedule(self.interval_s, self.cron)  # checks the interval or cron setting

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.interval_s, self.cron)


class Retrainer:
    """Decides, runs and gates retraining; hands promoted models to the pipeline.

    ``feed`` is the engine's recorder (``Engine(..., recorder=feed)``). ``background``
    (live): each run is a child process, so ``fit`` must be a ``NamedFit`` the child can
    rebuild, it takes its turn on the registry, and the registry is followed for
    versions other instances promote; otherwise (a replay) ``fit`` is called inline,
    the schedule runs on the data's clock, and the registry is neither locked nor followed.
    """

    def __init__(
        self,
        engine: Engine,
        feed: StepFeed,
        fit: Fit,
        policy: RetrainPolicy,
        features: FeatureParams,
        *,
        registry: Registry | None = None,
        metrics: Metrics,
        background: bool = True,
        events: EventSink | None = None,
    ) -> None:
        if engine.recorder is not feed:
            raise ConfigError("the engine must record its steps into the Retrainer's feed")
        self.engine = engine
        self.feed = feed
        self.policy = policy
        self.features = features
        self.registry = registry
        self.metrics = metrics
        self.events = events
        self.execution = Execution(fit, policy.timeout_s, background)
        self.decay = DecayMonitor(policy.decay)
        self.triggers = Triggers(
            policy.schedule, policy.every_ticks, self.decay, on_data_clock=not background
        )
        self._promotion = Promotion(registry, features, policy.keep_versions)
        shared = registry if background else None  # live: other instances may share it
        self._turns = Turns(shared.root, policy.schedule.period_s()) if shared else None
        self._follower = (
            RegistryFollower(shared, features, policy.registry_poll_s) if shared else None
        )
        self._trigger, self._started = "", 0.0  # of the run under way
        self._ready: Stepper | None = None
        self._trial: ShadowTrial | None = None  # the candidate in shadow
        self._trial_holdout = math.nan  # its holdout MASE, judged against once it serves

    @property
    def running(self) -> bool:
        """A live run started and its outcome not collected yet."""
        return self.execution.running

    def request(self) -> str:
        """Ask for a retraining run at the next batch boundary (manual trigger)."""
        self.triggers.request()
        return "retraining requested: it starts at the next batch boundary"

    def schedule_fired(self) -> None:
        """What the wall-clock schedule calls: a run at the next batch boundary, skipped if
        any instance on the registry started one recently (``sharing.RECENT_SHARE``)."""
        self.triggers.schedule_fired()

    def start(self) -> None:
        """Run the interval/cron schedule on the wall clock (live service)."""
        self.triggers.start()

    def stop(self) -> None:
        """Stop the schedule and end a running training process (service shutdown)."""
        self.triggers.stop()
        self.execution.stop()
        self._release()

    def settled(self, forecasts: ForecastBatch) -> None:
        """The prices of a committed batch settle earlier forecasts: score the serving
        model's, for the decay trigger."""
        self.decay.observe(forecasts.ticks.price, forecasts.previous_price,
                           forecasts.previous_forecast)  # fmt: skip
        self.metrics.retrain_live_mase.set(self.decay.mase())
        if self._trial is not None and self.engine.shadow is not None:
            self._trial.observe(self.engine.shadow.drain())
            self._show_trial(self._trial)

    def pending(self) -> Stepper | None:
        """Called at each batch boundary: the new model to swap in, if one is ready."""
        if (finished := self.execution.poll()) is not None:
            self._conclude(finished)
        if self._trial is not None:
            self._judge_shadow(self._trial)
        idle = self._ready is None and not self.running and self._trial is None
        if idle and (trigger := self.triggers.due(self.feed)):
            self._launch(trigger)
        if self._ready is None and self._follower is not None:
            serving = self.engine.model.version if self.engine.model is not None else None
            if (model := self._follower.poll(serving)) is not None:
                self._drop_shadow(f"model {model.version} was promoted meanwhile")
                self._serve(model)
        model, self._ready = self._ready, None
        return model

    def _launch(self, trigger: str) -> None:
        """Read the window (on the pipeline thread, between batches) and start a run."""
        self.triggers.consumed(self.feed)
        self._trigger, self._started = trigger, time.monotonic()
        self.metrics.retrain_triggers.labels(trigger).inc()
        self._event("trigger", trigger)
        if self._turns is not None and not self._take_turn(self._turns):
            return
        log.info("retraining started (trigger: %s) while %s serves", trigger, self._serving())
        try:
            window = select_window(self._sequences(), self.policy.window, MIN_SERIES_STEPS)
            job = TrainingJob(self.policy.holdout, self.policy.margin, self.features,
                              window.summary, self.registry)  # fmt: skip
            finished = self.execution.start(job, window.sequences, self.engine.model)
        except Exception as exc:  # whatever a run runs into, the serving model must keep serving
            finished = Finished(None, internal_error_detail(exc))
        if finished is not None:
            self._conclude(finished)

    def _sequences(self) -> list[Sequence]:
        """What a run trains on: every warm step so far for the first model, else the rings."""
        if self.feed.bootstrap is not None:
            return self.feed.bootstrap.sequences()
        table = self.engine.table
        return sequences_from_history(table.history(np.sort(table.active_slots())))

    def _take_turn(self, turns: Turns) -> bool:
        """This instance's turn on the shared registry; False if the run is skipped or
        failed (reported)."""
        try:
            skipped = turns.take(scheduled=self._trigger == self.policy.schedule.name)
        except ArtifactError as exc:
            self._report("failed", error=str(exc))
            return False
        if skipped is not None:
            self._report("skipped", error=skipped)
        return skipped is None

    def _release(self) -> None:
        if self._turns is not None:
            self._turns.release()

    def _conclude(self, finished: Finished) -> None:
        """Act on the end of a run: promote or reject its candidate, or count its failure."""
        try:
            self._settle(finished)
        except Exception as exc:
            self._report("failed", error=internal_error_detail(exc))
        finally:
            if self._trial is None:  # a candidate in shadow keeps the turn to its verdict
                self._release()

    def _settle(self, finished: Finished) -> None:
        candidate = finished.candidate
        if candidate is None:
            self._report("failed", error=finished.error)
            return
        show_training(self.metrics, candidate.details)
        if candidate.verdict.promote and self.policy.shadow.on and self.engine.model is not None:
            self._start_shadow(candidate)
            self._report("shadowed", candidate.version, candidate.verdict)
            return
        model = self._promotion.settle(candidate)
        if model is not None:
            self._serve(model, candidate.verdict.candidate_mase)
        result = "promoted" if model is not None else "rejected"
        self._report(result, candidate.version, candidate.verdict)

    def _start_shadow(self, candidate: Candidate) -> None:
        """Step ``candidate`` beside the serving model from the next batch on."""
        self.engine.start_shadow(self._promotion.trial(candidate))
        self._trial = ShadowTrial(candidate.version, self.policy.shadow, self.policy.margin,
                                  self.feed.newest_ts)  # fmt: skip
        self._trial_holdout = candidate.verdict.candidate_mase
        self._show_trial(self._trial)
        log.info("candidate %s passed the gate: in shadow beside %s until %d forecasts are "
                 "scored", candidate.version, self._serving(),
                 self.policy.shadow.min_points)  # fmt: skip

    def _judge_shadow(self, trial: ShadowTrial) -> None:
        """End the shadow if its verdict is in, or if stepping the candidate failed."""
        if self.engine.shadow is None:
            self._drop_shadow("stepping the candidate failed (see the log)")
        elif (verdict := trial.verdict(self.feed.newest_ts)) is not None:
            self._end_shadow(verdict)

    def _end_shadow(self, verdict: ShadowVerdict) -> None:
        """Act on the shadow's verdict: record it, then promote the candidate or not."""
        trial, shadow = self._trial, self.engine.shadow
        assert trial is not None and shadow is not None, "a verdict ends a shadow under way"
        self._drop_shadow("")
        outcome = "promoted" if verdict.promote else "rejected"
        self.metrics.shadow_verdicts.labels(outcome).inc()
        self._event("shadow", outcome, trial.version)
        log.info("shadow of %s: %s (%d forecasts, live MASE %.4f against serving %.4f, "
                 "DM %.3f, p %.3g): %s", trial.version, outcome, verdict.points,
                 verdict.candidate_mase, verdict.serving_mase, verdict.dm_statistic,
                 verdict.p_value, verdict.reason)  # fmt: skip
        try:
            if self.registry is not None:
                self.registry.annotate(trial.version, "shadow", verdict.to_dict())
            if verdict.promote:
                self._serve(self._promotion.serve(trial.version, shadow.model), self._trial_holdout)
            else:
                self._promotion.reject()
        except Exception as exc:  # whatever it runs into, the serving model keeps serving
            log.error("cannot act on the shadow verdict of %s (%s); %s keeps serving",
                      trial.version, internal_error_detail(exc), self._serving())  # fmt: skip

    def _drop_shadow(self, reason: str) -> None:
        """End the shadow, if any (``reason``: why it ends without a verdict, logged)."""
        if self._trial is None:
            return
        if reason:
            log.warning("shadow of %s ends without a verdict: %s", self._trial.version, reason)
        self._trial = None
        self.engine.end_shadow()
        self._release()
        self.metrics.shadow_active.set(0)
        for model in ("candidate", "serving"):
            self.metrics.shadow_mase.labels(model).set(math.nan)

    def _show_trial(self, trial: ShadowTrial) -> None:
        candidate, serving = trial.mase()
        self.metrics.shadow_active.set(1)
        self.metrics.shadow_points.set(trial.points)
        self.metrics.shadow_mase.labels("candidate").set(candidate)
        self.metrics.shadow_mase.labels("serving").set(serving)

    def _serve(self, model: Stepper, holdout_mase: float | None = None) -> None:
        """Hand ``model`` to the pipeline at this boundary; the bootstrap is over, and its
        live quality is judged from now on (against its holdout MASE, if known)."""
        self._ready = model
        self.feed.model_served()
        self.decay.restart(holdout_mase)

    def _report(
        self, result: str, version: str | None = None, verdict: Verdict | None = None,
        error: str = "",
    ) -> None:  # fmt: skip
        seconds = 0.0 if result == "skipped" else time.monotonic() - self._started
        outcome = Outcome(result, self._trigger, version, verdict, error, seconds)
        report(outcome, self.metrics, self._serving())
        self._event("run", result, version or "")
        if result != "promoted" and self.feed.bootstrap is not None:
            at = self.feed.bootstrap_missed()
            log.warning("no first model yet; next try after %d warm steps", at)

    def _event(self, kind: str, what: str, version: str = "") -> None:
        if self.events is not None:
            self.events(RetrainEvent(self.feed.newest_ts, kind, what, version))

    def _serving(self) -> str:
        """What serves now, for the log: a model version, or the naive forecast."""
        model = self.engine.model
        return f"model {model.version}" if model is not None else "the naive forecast"
