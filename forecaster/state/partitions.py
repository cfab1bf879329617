"""The series state of the partitions this instance holds, through the consumer group's
assign / revoke / lost lifecycle (as Quix Streams' StateStoreManager does for its stores).

The transport reports the lifecycle (``PartitionListener`` in ``forecaster.io.base``) and
knows nothing of state; this component knows nothing of Kafka: partitions and offsets
are ints. ``offsets[p]`` is how far the engine's state of partition ``p`` has come: every
tick before it has been stepped and its forecast delivered.

- **revoke**: the partition's series leave the engine, are checkpointed at their offset,
  and are kept in memory in case the group hands the partition straight back.
- **lose** (the member was evicted; another may own the partition already): the series
  leave the engine and are dropped, neither checkpointed nor kept, since they may be stale.
- **assign**, with the group's committed offset: state kept at a revoke comes back only if
  it stopped exactly at the committed offset (nobody moved the partition on since, see
  ``restorable``). Otherwise, with checkpoints, the checkpoint loads in the background
  while the partition's records are held back (``held``), and ``resumes`` then says
  where its consumption continues: at the checkpoint's offset, or, with none usable, at
  the partition's first offset to rebuild the state. Without checkpoints its series
  start afresh at the committed offset. An instance never steps a series with stale state.

The pipeline moves ``offsets`` on after each delivered batch (``advance``) and writes the
checkpoints of every held partition when they are due (``checkpoint_when_due``). Before
any partition comes or goes, ``before_handoff`` runs: a pipeline with a batch still in
flight settles it there, so the engine holds no batch pending while partitions move.

**Exactly once** (``replay_committed``): the group's committed offset, written with every
batch's transaction, runs ahead of the last checkpoint, which is written only when due.
A partition restored from a checkpoint (or rebuilt from its first offset) below its
committed offset steps the ticks up to the committed offset again without emitting their
forecasts and dead letters, already delivered (``replaying``), then carries on. Only a
checkpoint at or below the committed offset is restored: one above it was written by a
transaction that did not commit, and one at or below it holds exactly the state a
committed one would (stepping is deterministic), even if the transaction that wrote it
aborted.

>>> from forecaster.core.engine import Engine, EngineParams
>>> from forecaster.ops.metrics import Metrics
>>> states = PartitionStates(Engine(EngineParams()), None, Metrics(), checkpoint_interval_s=60)
>>> states.assign({0: 12, 1: None})
>>> states.offsets
{0: 12}
>>> states.advance({0: 20}); states.revoke([0]); states.offsets
{}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from forecaster.core.engine import Engine, PartitionState
from forecaster.errors import ForecasterError
from forecaster.ops.metrics import Metrics
from forecaster.state.checkpoint import Checkpoint, Checkpoints

log = logging.getLogger(__name__)

RESTORE_RETRY_S = 1.0  # wait before reading a checkpoint store again that could not be read
RESTORE_THREADS = 2


@dataclass(frozen=True)
class Resume:
    """Where consumption of a restored partition continues: ``offset``, or the partition's
    first offset when it is None (no usable checkpoint: the state is rebuilt)."""

    partition: int
    offset: int | None


@dataclass(frozen=True)
class Restore:
    """A partition's checkpoint being loaded in the background since ``started``."""

    loading: Future[Checkpoint | None]
    started: float


def restorable(
    kept: tuple[PartitionState, int] | None, committed: int | None
) -> PartitionState | None:
    """The kept state, if it has stepped exactly the ticks before the committed offset.

    Any other committed offset means someone else processed the partition since (or our
    last commit failed): that state is stale and must not step another tick.
    """
    if kept is None or committed is None:
        return None
    state, offset = kept
    return state if offset == committed else None


class PartitionStates:
    """Series state per partition; see the module docstring.

    ``checkpoints`` None: no checkpoints are written or restored (state still moves
    within the process across revoke and assign).
    """

    def __init__(
        self,
        engine: Engine,
        checkpoints: Checkpoints | None,
        metrics: Metrics,
        checkpoint_interval_s: float,
        replay_committed: bool = False,
    ) -> None:
        self.engine = engine
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.checkpoint_interval_s = checkpoint_interval_s
        self.replay_committed = replay_committed
        self.offsets: dict[int, int] = {}
        # Exactly once: per partition, the committed offset its restored state steps up to
        # without emitting (every forecast before it was delivered).
        self.replaying: dict[int, int] = {}
        self._committed: dict[int, int | None] = {}
        self._kept: dict[int, tuple[PartitionState, int]] = {}
        self._restoring: dict[int, Restore] = {}
        self._last_checkpoint = time.monotonic()
        self._loader: ThreadPoolExecutor | None = None
        self.before_handoff: Callable[[], None] = _nothing_in_flight

    # --- the lifecycle, reported by the transport ------------------------------------------

    def assign(self, committed: Mapping[int, int | None]) -> None:
        """Partitions now held, each with the group's committed offset (None if none)."""
        self.before_handoff()
        for partition, offset in sorted(committed.items()):
            kept = self._kept.pop(partition, None)
            state = restorable(kept, offset)
            if state is not None:
                self.engine.put_partition(state)
                log.info("partition %d assigned: state of %d series restored at offset %d",
                         partition, len(state.snapshot.series), offset)  # fmt: skip
            elif self.checkpoints is not None:
                # Exactly once, nothing committed: no checkpoint can be of a committed batch.
                limit = (offset or 0) if self.replay_committed else None
                self._committed[partition] = limit
                self._restoring[partition] = Restore(self._load(partition, limit),
                                                     time.monotonic())  # fmt: skip
                continue
            elif kept is not None:
                log.warning("partition %d assigned: its state at offset %d is stale (committed "
                            "%s); its series start afresh", partition, kept[1], offset)  # fmt: skip
            if offset is not None:
                self.offsets[partition] = offset
        self.metrics.restoring_partitions.set(len(self._restoring))

    def revoke(self, partitions: Collection[int]) -> None:
        """Partitions handed to another member: checkpoint and keep their state."""
        self.before_handoff()
        for partition in sorted(partitions):
            self._forget(partition)  # a load may finish; nobody will use it
            state = self.engine.take_partition(partition)
            offset = self.offsets.pop(partition, None)
            if offset is not None and self.checkpoints is not None:
                self.checkpoints.save(state, offset)
            if offset is not None and state.snapshot.series:
                self._kept[partition] = (state, offset)
            log.info("partition %d revoked at offset %s", partition, offset)
        self.metrics.restoring_partitions.set(len(self._restoring))

    def lose(self, partitions: Collection[int]) -> None:
        """Partitions taken away by an eviction: another member may have moved them on
        already, so their state is dropped, not checkpointed."""
        self.before_handoff()
        for partition in sorted(partitions):
            self._forget(partition)
            self._kept.pop(partition, None)
            self.engine.take_partition(partition)
            offset = self.offsets.pop(partition, None)
            log.warning("partition %d lost at offset %s: its state is dropped", partition, offset)
        self.metrics.restoring_partitions.set(len(self._restoring))

    def _forget(self, partition: int) -> None:
        self._restoring.pop(partition, None)
        self._committed.pop(partition, None)
        self.replaying.pop(partition, None)

    # --- progress, reported by the pipeline --------------------------------------------------

    def advance(self, next_offsets: Mapping[int, int]) -> None:
        """A batch was delivered: each partition's state now reaches its next offset."""
        self.offsets.update(next_offsets)
        for partition, offset in next_offsets.items():
            if partition in self.replaying and self.replaying[partition] <= offset:
                del self.replaying[partition]
                log.info("partition %d: replayed up to its committed offset", partition)

    def checkpoint_when_due(self) -> None:
        """Checkpoint every held partition if ``checkpoint_interval_s`` has passed."""
        if time.monotonic() - self._last_checkpoint < self.checkpoint_interval_s:
            return
        self._last_checkpoint = time.monotonic()
        if self.checkpoints is None:
            return
        for partition, offset in sorted(self.offsets.items()):
            self.checkpoints.save(self.engine.snapshot_partition(partition), offset)

    def resumes(self) -> list[Resume]:
        """Put back every checkpoint that finished loading; where each partition resumes."""
        finished = [p for p, restore in self._restoring.items() if restore.loading.done()]
        resumes = []
        for partition in sorted(finished):
            restore = self._restoring.pop(partition)
            try:
                checkpoint = restore.loading.result()
            except ForecasterError as exc:
                log.warning("partition %d: %s; trying again in %.0f s", partition, exc,
                            RESTORE_RETRY_S)  # fmt: skip
                limit = self._committed.get(partition)
                self._restoring[partition] = Restore(self._load(partition, limit,
                                                                RESTORE_RETRY_S),
                                                     restore.started)  # fmt: skip
                continue
            resumes.append(self._put_back(partition, checkpoint))
            self.metrics.restore_seconds.observe(time.monotonic() - restore.started)
        self.metrics.restoring_partitions.set(len(self._restoring))
        return resumes

    def held(self) -> set[int]:
        """Partitions waiting for their checkpoint: their records must not be stepped."""
        return set(self._restoring)

    def restoring(self) -> int:
        """How many held partitions wait for their checkpoint."""
        return len(self._restoring)

    def close(self) -> None:
        """Stop waiting for checkpoint loads (a load in flight finishes, unused) and close
        the checkpoint store. The transport has revoked every partition before."""
        self._restoring.clear()
        if self._loader is not None:
            self._loader.shutdown(wait=False, cancel_futures=True)
            self._loader = None
        if self.checkpoints is not None:
            self.checkpoints.close()

    def _put_back(self, partition: int, checkpoint: Checkpoint | None) -> Resume:
        committed = self._committed.pop(partition, None)
        resume = None if checkpoint is None else checkpoint.offset
        if committed and (resume is None or resume < committed):
            self.replaying[partition] = committed
            log.info("partition %d: stepping from %s to its committed offset %d without "
                     "emitting", partition, resume, committed)  # fmt: skip
        if checkpoint is None:
            log.warning("partition %d assigned: no usable checkpoint; rebuilding its state "
                        "from its first offset", partition)  # fmt: skip
            self.offsets.pop(partition, None)
            return Resume(partition, None)
        self.engine.put_partition(checkpoint.state)
        log.info("partition %d assigned: checkpoint of %d series restored at offset %d",
                 partition, len(checkpoint.state.snapshot.series), checkpoint.offset)  # fmt: skip
        self.offsets[partition] = checkpoint.offset
        return Resume(partition, checkpoint.offset)

    def _load(
        self, partition: int, at_most: int | None, delay_s: float = 0.0
    ) -> Future[Checkpoint | None]:
        if self._loader is None:
            self._loader = ThreadPoolExecutor(RESTORE_THREADS, thread_name_prefix="restore")
        checkpoints = self.checkpoints
        assert checkpoints is not None

        def load() -> Checkpoint | None:
            time.sleep(delay_s)
            if at_most is None:
                return checkpoints.load(partition)
            return checkpoints.load(partition, at_most)

        return self._loader.submit(load)


def _nothing_in_flight() -> None:
    """``before_handoff`` of a pipeline that settles each batch before the next poll."""
