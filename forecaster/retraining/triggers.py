"""When a retraining run is due, and why: ``manual`` (``POST /retrain``, ``forecaster
retrain``), ``bootstrap`` (no model yet: once the first one's data is in), ``interval``
or ``cron`` (the ``Schedule``), ``decay`` (the serving model's live quality fell,
``forecaster.retraining.decay``) or ``ticks`` (``every_ticks`` warm steps).

Live, the schedule fires on the wall clock in an APScheduler BackgroundScheduler; in a
replay it is evaluated on the ticks' own timestamps (``DataClock``), so a replay retrains
where a live run would have, every time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from forecaster.errors import ConfigError
from forecaster.retraining.decay import DecayMonitor
from forecaster.retraining.feed import StepFeed

NS = 1_000_000_000
CRON_FIRES_SCANNED = 32  # the fires of a crontab searched for its shortest period


@dataclass(frozen=True)
class Schedule:
    """The interval (seconds) or cron (crontab, UTC) trigger; 0 / '' switches it off."""

    interval_s: float = 0.0
    cron: str = ""

    def __post_init__(self) -> None:
        if self.interval_s and self.cron:
            raise ConfigError("set retrain_interval or retrain_cron, not both")
        self.trigger(datetime.now(UTC))

    @property
    def on(self) -> bool:
        return bool(self.interval_s or self.cron)

    @property
    def name(self) -> str:
        """The trigger's name: ``cron`` or ``interval``."""
        return "cron" if self.cron else "interval"

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

        >>> Schedule(cron="0 9,10 * * *").period_s()
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


class DataClock:
    """The schedule evaluated on tick timestamps instead of the wall clock."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._trigger: Any = None
        self._next: datetime | None = None

    def due(self, newest_ts: int) -> bool:
        """True once per fire time the data's clock has passed (missed fires coalesce)."""
        if newest_ts <= 0 or not self.schedule.on:
            return False
        now = datetime.fromtimestamp(newest_ts / NS, UTC)
        if self._trigger is None:
            self._trigger = self.schedule.trigger(now)
            self._next = self._trigger.get_next_fire_time(None, now)
            return False
        if self._next is None or now < self._next:
            return False
        self._next = self._trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        return True


class Triggers:
    """Collects what asks for a run and says, at a batch boundary, which trigger is due.

    ``on_data_clock`` (a replay): the schedule also fires on the ticks' timestamps.
    ``start`` runs it on the wall clock, as the live service does.
    """

    def __init__(
        self, schedule: Schedule, every_ticks: int, decay: DecayMonitor, on_data_clock: bool
    ) -> None:
        self.schedule = schedule
        self.every_ticks = every_ticks
        self.decay = decay
        self._clock = DataClock(schedule) if on_data_clock else None
        self._requested = threading.Event()
        self._fired = threading.Event()  # the wall-clock schedule fired
        self._scheduler: Any = None

    def request(self) -> None:
        """A run at the next batch boundary (the manual trigger)."""
        self._requested.set()

    def schedule_fired(self) -> None:
        """What the wall-clock schedule calls: a run at the next batch boundary."""
        self._fired.set()

    def start(self) -> None:
        """Run the schedule on the wall clock (live service)."""
        trigger = self.schedule.trigger(datetime.now(UTC))
        if trigger is None:
            return
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.add_job(
            self.schedule_fired, trigger, id="retrain", coalesce=True, max_instances=1
        )
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def due(self, feed: StepFeed) -> str:
        """The trigger of a run due now ('' if none): manual, bootstrap, interval or cron,
        decay, ticks."""
        # Evaluated first: the data clock moves on whichever trigger is due.
        clock_fired = self._clock is not None and self._clock.due(feed.newest_ts)
        if self._requested.is_set():
            return "manual"
        if feed.bootstrap is not None:  # no model yet: the first one waits for its data
            return "bootstrap" if feed.bootstrap_due() else ""
        if clock_fired or self._fired.is_set():
            return self.schedule.name
        if self.decay.due(feed.newest_ts):
            return "decay"
        return "ticks" if 0 < self.every_ticks <= feed.steps_since_run else ""

    def consumed(self, feed: StepFeed) -> None:
        """A run starts: it answers every request and fire so far, and its steps count."""
        self._requested.clear()
        self._fired.clear()
        feed.run_started()
