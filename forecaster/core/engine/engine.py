"""The Engine: holds the series table and the serving model, steps batches of ticks
(``stepping``) and keeps each pending until ``commit()`` or ``rollback()``; swaps the
model, re-warming the series' states from their history rings, at once (``swap_model``)
or off the serving loop (``begin_swap``, then ``continue_swap`` at each batch boundary
until it installs the model: ``rewarming``); moves a partition's series state out (take,
snapshot) and in (put).

>>> engine = Engine(EngineParams())
>>> engine.take_partition(0).snapshot.series, engine.snapshot_partition(0).model_version
([], 'naive')
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from forecaster.core import intervals
from forecaster.core.engine.eviction import IdleEviction
from forecaster.core.engine.params import EngineParams
from forecaster.core.engine.pending import PendingBatch, WarmSteps
from forecaster.core.engine.results import NAIVE, EngineResult
from forecaster.core.engine.rewarming import RewarmJob
from forecaster.core.engine.shadow import ShadowModel
from forecaster.core.engine.stepping import Stepping, rewarm
from forecaster.core.features import FEATURE_NAMES
from forecaster.core.table import BackupArea, SeriesTable, TableSnapshot
from forecaster.core.ticks import TickColumns
from forecaster.faults import internal_error_detail, log_internal_error
from forecaster.model.stepper import Stepper

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Called at each commit with (series, z, d, ts) of the batch's warm steps, each series'
# in order, e.g. to collect training data; series are SeriesTable uids, never reused.
StepRecorder = Callable[[IntArray, FloatArray, FloatArray, IntArray], None]


@dataclass(frozen=True)
class PartitionState:
    """The series state of one source partition, and the model whose states it holds."""

    partition: int
    model_version: str
    snapshot: TableSnapshot


class Engine:
    """Holds the series table and the serving model; steps batches of ticks."""

    def __init__(
        self,
        params: EngineParams,
        model: Stepper | None = None,
        recorder: StepRecorder | None = None,
    ) -> None:
        self.params = params
        self.model: Stepper | None = None
        self.recorder = recorder
        self.table = SeriesTable(params.ring_length, state_size=0, clip=params.features.clip)
        self._evictions = IdleEviction(params.evict_ttl_ns)
        self._pending: PendingBatch | None = None
        self._backup_area = BackupArea()  # of the batch stepped together, reused
        self.shadow: ShadowModel | None = None  # a candidate stepped beside the model
        self.rewarming: RewarmJob | None = None  # a swap re-warmed off the loop
        if model is not None:
            self.swap_model(model)

    def process(self, ticks: TickColumns) -> EngineResult:
        """Step every tick of the batch; returns forecasts of the accepted ones and the rejects.

        The batch stays pending until ``commit`` or ``rollback``; one still pending from
        before is committed first.
        """
        self.commit()
        keep_warm = self.recorder is not None or self.rewarming is not None
        stepping = Stepping(self.table, self.params, self.model, keep_warm,
                            self._backup_area, keep_rounds=self.shadow is not None)  # fmt: skip
        try:
            work = self._attempt(ticks, stepping.together)
        except Exception as exc:
            log.debug("stepping a batch of %d ticks raised %s; stepping them one at a time",
                      len(ticks), internal_error_detail(exc))  # fmt: skip
            work = self._attempt(ticks, stepping.singly)
        return work.result(self._version())

    def commit(self) -> int:
        """Make the pending batch final: its warm steps go to the recorder, then idle series
        are evicted. Returns how many were (0 with no batch pending)."""
        work, self._pending = self._pending, None
        if work is None:
            return 0
        warm = work.warm_steps()
        self._record(warm)
        if self.rewarming is not None:
            self.rewarming.follow(warm)
        if self.shadow is not None:
            self._follow_shadow(work)
        accepted, ticks = work.kept(), work.ticks
        series = self.table.uid[work.slots[accepted]]
        return self._evictions.sweep(
            self.table, ticks.partition[accepted], series, ticks.ts[accepted]
        )

    def rollback(self) -> None:
        """Put every series the pending batch touched back as it was before the batch, and
        drop the series it created (nothing happens with no batch pending)."""
        work, self._pending = self._pending, None
        if work is None:
            return
        for undo in reversed(work.undo):
            undo.restore(self.table)

    def _attempt(self, ticks: TickColumns, step: Callable[[PendingBatch], None]) -> PendingBatch:
        """Run ``step`` on ``ticks`` as the pending batch; if it raises, it is rolled back."""
        work = self._pending = PendingBatch.start(ticks)
        try:
            step(work)
        except BaseException:
            self.rollback()
            raise
        return work

    def _record(self, warm: list[WarmSteps]) -> None:
        """Hand the warm steps of a batch being committed to the recorder, in one call."""
        if self.recorder is None or not warm:
            return
        slots, z, d, ts = (np.concatenate(column) for column in zip(*warm, strict=True))
        self.recorder(self.table.uid[slots], z, d, ts)

    def swap_model(self, model: Stepper) -> None:
        """Serve ``model`` from the next batch on, its states re-warmed from the history rings
        (a pending batch is committed first; a swap begun is dropped)."""
        self.commit()
        _check_features(model)
        self._drop_swap()
        self.model = model
        self.table.reset_recurrent(model.state_size)
        self._rewarm(self.table.active_slots())
        intervals.restart_model(self.table.calibration)

    def swap(self, model: Stepper) -> Stepper | None:
        """Serve ``model``: re-warmed off the loop with ``rewarm_in_background``
        (``begin_swap``), else at once (``swap_model``; ``model`` is returned)."""
        if self.params.rewarm_in_background:
            return self.begin_swap(model)
        self.swap_model(model)
        return model

    def begin_swap(self, model: Stepper) -> Stepper | None:
        """Re-warm ``model``'s states off the serving loop (``rewarming``) while the model
        serving goes on; ``continue_swap`` at each batch boundary installs it once they are
        ready (``model`` if that is at once: no series held). A swap begun before is
        dropped; a pending batch is committed first.

        >>> from forecaster.model.spec import ModelSpec
        >>> from forecaster.model.stepper import LayerWeights
        >>> layer = LayerWeights(np.ones((4, 3), np.float32), np.ones((1, 3), np.float32),
        ...                      np.zeros((2, 3), np.float32))
        >>> spec = ModelSpec(cell="gru", layers=1, units=1, n_features=4)
        >>> head = np.ones((1, 1), np.float32), np.zeros(1, np.float32)
        >>> model = Stepper(spec, "v2", [layer], *head)
        >>> from forecaster.core.ticks import parse_messages
        >>> engine = Engine(EngineParams())
        >>> tick = parse_messages([b'{"series":"X","ts":1,"price":2.0}']).ticks
        >>> _ = engine.process(tick)
        >>> engine.begin_swap(model)
        >>> while engine.rewarming is not None:  # at each batch boundary
        ...     _ = engine.continue_swap()  # the loop serves its next batch meanwhile
        >>> engine.model.version
        'v2'
        """
        self.commit()
        _check_features(model)
        self._drop_swap()
        log.info("re-warming model %s off the loop; %s serves meanwhile", model.version,
                 self._version())  # fmt: skip
        self.rewarming = RewarmJob(model, self.table)
        return self.continue_swap()  # its first chunk is copied at once

    def continue_swap(self) -> Stepper | None:
        """At a batch boundary, with a swap begun: hand its next chunk of work over, and
        install the model once its states are ready (returned then, else None). If its
        re-warm raised, the swap is dropped (logged) and the serving model goes on."""
        job = self.rewarming
        if job is None:
            return None
        self.commit()
        try:
            states = job.advance()
        except Exception as exc:
            log_internal_error(f"re-warming model {job.model.version} (its swap is dropped)", exc)
            self._drop_swap()
            return None
        if states is None:
            return None
        self.rewarming = None
        self.model = job.model
        self.table.recurrent = states
        intervals.restart_model(self.table.calibration)
        return job.model

    def stop_background(self) -> None:
        """Stop the threads of a swap being re-warmed and of a shadow warming up, if any
        (the service stops: their queued work would hold its exit up)."""
        self._drop_swap()
        if self.shadow is not None:
            self.shadow.close()

    def _drop_swap(self) -> None:
        if self.rewarming is not None:
            self.rewarming.cancel()
            self.rewarming = None

    def start_shadow(self, model: Stepper) -> None:
        """Step ``model`` in shadow beside the serving model from the next batch on, or
        from the commit its states are re-warmed at (``rewarm_in_background``:
        ``forecaster.core.engine.shadow``); a pending batch is committed first."""
        self.commit()
        _check_features(model)
        self._close_shadow()
        background = self.params.rewarm_in_background
        self.shadow = ShadowModel(model, self.table, self.params.block_rows, background)

    def end_shadow(self) -> None:
        """Stop stepping the model in shadow (a pending batch is committed first)."""
        self.commit()
        self._close_shadow()

    def _close_shadow(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
            self.shadow = None

    def _follow_shadow(self, work: PendingBatch) -> None:
        """Step the model in shadow over a batch being committed; if that raises, the
        shadow is dropped (logged): a candidate's fault never costs a served tick."""
        assert self.shadow is not None
        try:
            self.shadow.follow(self.table, work)
        except Exception as exc:
            log_internal_error("stepping the model in shadow (it is dropped)", exc)
            self._close_shadow()

    def _rewarm(self, slots: IntArray) -> None:
        """Recompute the recurrent state of ``slots`` by running the model over their rings."""
        if self.model is not None:
            rewarm(self.model, self.table, slots, self.params.block_rows, self.table.recurrent)

    def snapshot_partition(self, partition: int) -> PartitionState:
        """A copy of the state of every series on ``partition`` (checkpoints), with the
        pending batch, if any, stepped in."""
        slots = self.table.slots_of_partition(partition)
        return PartitionState(partition, self._version(), self.table.snapshot(slots))

    def take_partition(self, partition: int) -> PartitionState:
        """Detach the state of every series on ``partition`` (revoke, hand-off); a pending
        batch is committed first."""
        self.commit()
        slots = self.table.slots_of_partition(partition)
        return PartitionState(partition, self._version(), self.table.take(slots))

    def put_partition(self, state: PartitionState) -> None:
        """Attach a partition's state; recurrent states made by another model (or not of
        this model's size, as a damaged checkpoint may hold) are re-warmed. A pending batch
        is committed first."""
        self.commit()
        snapshot = state.snapshot
        foreign = state.model_version != self._version() or snapshot.recurrent.shape[1:] != (
            self.table.state_size,
        )
        if foreign:
            snapshot = replace(
                snapshot,
                recurrent=np.zeros((len(snapshot.series), self.table.state_size), np.float32),
            )
        slots = self.table.put(snapshot)
        if self.rewarming is not None:
            self.rewarming.forget(slots)
        if foreign:
            self._rewarm(slots)
            calibration = self.table.calibration[slots]
            intervals.restart_model(calibration)
            self.table.calibration[slots] = calibration

    def load_kernels(self) -> None:
        """Step a scratch engine (these params, this model) through one series' first
        ticks, batch by batch, so that the compiled kernels (``forecaster.core.compiled``)
        are loaded now (about 66 MB of code, 0.3-0.6 s; compiled, seconds, on a cold
        cache), not inside the first batch served. This engine is not touched."""
        scratch = Engine(self.params, self.model)
        for tick in range(self.params.features.min_history + 2):
            scratch.process(_kernel_tick(tick))
        scratch.commit()
        if self.model is not None:  # a round of many series steps it another way
            self.model.load_kernels()

    def _version(self) -> str:
        return self.model.version if self.model is not None else NAIVE


def _kernel_tick(tick: int) -> TickColumns:
    """The ``tick``-th tick of ``load_kernels``' series: a price that moves."""
    return TickColumns(
        position=np.zeros(1, np.int64), series=["load-kernels"],
        ts=np.full(1, tick + 1, np.int64), price=np.full(1, 100.0 + tick % 3),
        volume=np.full(1, np.nan), partition=np.zeros(1, np.int32),
    )  # fmt: skip


def _check_features(model: Stepper) -> None:
    if model.spec.n_features != len(FEATURE_NAMES):
        raise ValueError(
            f"model expects {model.spec.n_features} features, engine makes {len(FEATURE_NAMES)}"
        )
