"""Partition state hand-off: series state moves between the engine and a store (and the
checkpoints) as the consumer group moves partitions. See the package docstring."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError

from forecaster.core.engine import Engine, PartitionState
from forecaster.errors import ForecasterError
from forecaster.ops.metrics import Metrics
from forecaster.state.checkpoint import Checkpoint, Checkpoints

log = logging.getLogger(__name__)

RESTORE_RETRY_S = 1.0  # wait before reading a checkpoint store again that could not be read
RESTORE_THREADS = 2


class PartitionStateStore(Protocol):
    """Where a partition's series state waits between a revoke and the next assignment."""

    def save(self, partition: int, state: PartitionState, offset: int) -> None:
        """Keep ``state``, which has stepped every tick of ``partition`` before ``offset``."""
        ...

    def load(self, partition: int) -> tuple[PartitionState, int] | None:
        """The state saved for ``partition`` and its offset, handed over once; None if none."""
        ...


@dataclass
class InMemoryPartitionStateStore:
    """Hand-off within one process: a partition revoked and assigned back keeps its state."""

    saved: dict[int, tuple[PartitionState, int]] = field(default_factory=dict)

    def save(self, partition: int, state: PartitionState, offset: int) -> None:
        self.saved[partition] = (state, offset)

    def load(self, partition: int) -> tuple[PartitionState, int] | None:
        return self.saved.pop(partition, None)


def restorable(
    saved: tuple[PartitionState, int] | None, committed: int | None
) -> PartitionState | None:
    """The saved state, if it has stepped exactly the ticks before the committed offset.

    Any other committed offset means someone else processed the partition since (or our
    last commit failed): that state is stale and must not step another tick.
    """
    if saved is None or committed is None:
        return None
    state, offset = saved
    return state if offset == committed else None


class PartitionHandoff(ConsumerRebalanceListener):  # type: ignore[misc]
    """Moves series state between the engine and a store as the group moves partitions.

    ``stepped[tp]`` is the offset the engine's state of ``tp`` has reached: every tick
    before it has been stepped. kafka-python calls ``on_partitions_lost`` (forced
    eviction) as ``on_partitions_revoked``; the store rule then decides at assignment.
    With ``checkpoints``, a revoked partition's state is also checkpointed, and a
    partition the store cannot restore is restored from its checkpoint (see ``restore``).
    """

    def __init__(
        self,
        engine: Engine,
        store: PartitionStateStore,
        checkpoints: Checkpoints | None,
        metrics: Metrics,
    ) -> None:
        self.engine = engine
        self.store = store
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.stepped: dict[TopicPartition, int] = {}
        self.rebalancing_since: float | None = None  # a revoke no assignment has followed yet
        self._unrestored: set[TopicPartition] = set()
        self._restoring: dict[TopicPartition, Restore] = {}
        self._loader: ThreadPoolExecutor | None = None

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.rebalancing_since = time.monotonic()
        for tp in revoked:
            self._unrestored.discard(tp)
            self._restoring.pop(tp, None)  # its load may finish; nobody will use it
            state = self.engine.take_partition(tp.partition)
            offset = self.stepped.pop(tp, None)
            if offset is not None and self.checkpoints is not None:
                self.checkpoints.save(state, offset)
            if offset is not None and state.snapshot.series:
                self.store.save(tp.partition, state, offset)
            log.info("partition %d revoked at offset %s", tp.partition, offset)

    def checkpoint(self, assigned: set[TopicPartition]) -> None:
        """Write the state of every assigned partition whose offset is known."""
        if self.checkpoints is None:
            return
        for tp in sorted(assigned):
            if (offset := self.stepped.get(tp)) is not None:
                self.checkpoints.save(self.engine.snapshot_partition(tp.partition), offset)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restoring needs the committed offsets, a blocking call the listener may not
        make on kafka-python's IO thread: ``restore`` does it right after the poll."""
        self.rebalancing_since = None
        self._unrestored.update(assigned)
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))

    def restore(self, consumer: Any) -> set[TopicPartition]:
        """Put back the state of each newly assigned partition; returns the partitions whose
        records of this poll must be dropped (restoring, or repositioned by a restore).

        The store's state is put back if it is still valid at the committed offset. Else,
        with checkpoints, the partition's records are held back while its checkpoint loads
        in the background; a later call puts it back and resumes consumption at its
        offset, or, with none usable, from the partition's first offset to rebuild the
        state. Without checkpoints, its series start afresh at the committed offset.
        """
        for tp in sorted(self._unrestored):
            offset = _committed_offset(consumer, tp)
            saved = self.store.load(tp.partition)
            state = restorable(saved, offset)
            if state is not None:
                self.engine.put_partition(state)
                log.info("partition %d assigned: state of %d series restored at offset %d",
                         tp.partition, len(state.snapshot.series), offset)  # fmt: skip
            elif self.checkpoints is not None:
                # Its records are dropped until the load is done, not held by
                # consumer.pause(): in one kill -9 test run with kafka-python 3.0.12, a
                # partition paused at its assignment and resumed a poll later was never
                # fetched again.
                self._restoring[tp] = Restore(self._load(tp.partition), time.monotonic())
                continue
            elif saved is not None:
                log.warning("partition %d assigned: its state at offset %d is stale (committed %s);"
                            " its series start afresh", tp.partition, saved[1], offset)  # fmt: skip
            if offset is not None:
                self.stepped[tp] = offset
        self._unrestored.clear()
        held = self._finish_restores(consumer) | set(self._restoring)
        self.metrics.restoring_partitions.set(len(self._restoring))
        return held

    def restoring(self) -> int:
        """How many assigned partitions wait for their checkpoint."""
        return len(self._restoring)

    def _load(self, partition: int, delay_s: float = 0.0) -> Future[Checkpoint | None]:
        if self._loader is None:
            self._loader = ThreadPoolExecutor(RESTORE_THREADS, thread_name_prefix="restore")
        checkpoints = self.checkpoints
        assert checkpoints is not None

        def load() -> Checkpoint | None:
            time.sleep(delay_s)
            return checkpoints.load(partition)

        return self._loader.submit(load)

    def _finish_restores(self, consumer: Any) -> set[TopicPartition]:
        """Put back every checkpoint that finished loading; returns their partitions."""
        finished = {tp for tp, restore in self._restoring.items() if restore.loading.done()}
        for tp in sorted(finished):
            restore = self._restoring.pop(tp)
            try:
                checkpoint = restore.loading.result()
            except ForecasterError as exc:
                log.warning("partition %d: %s; trying again in %.0f s", tp.partition, exc,
                            RESTORE_RETRY_S)  # fmt: skip
                self._restoring[tp] = Restore(self._load(tp.partition, RESTORE_RETRY_S),
                                              restore.started)  # fmt: skip
                continue
            self._resume(consumer, tp, checkpoint)
            self.metrics.restore_seconds.observe(time.monotonic() - restore.started)
        return finished

    def _resume(self, consumer: Any, tp: TopicPartition, checkpoint: Checkpoint | None) -> None:
        """Put back ``checkpoint`` and consume ``tp`` from its offset, else from the
        partition's first offset (the fetcher looks it up)."""
        if checkpoint is None:
            log.warning("partition %d assigned: no usable checkpoint; rebuilding its state "
                        "from its first offset", tp.partition)  # fmt: skip
            consumer.seek_to_beginning(tp)
            self.stepped.pop(tp, None)
        else:
            self.engine.put_partition(checkpoint.state)
            series = len(checkpoint.state.snapshot.series)
            log.info("partition %d assigned: checkpoint of %d series restored at offset %d",
                     tp.partition, series, checkpoint.offset)  # fmt: skip
            consumer.seek(tp, checkpoint.offset)
            self.stepped[tp] = checkpoint.offset

    def close(self) -> None:
        """Stop waiting for checkpoint loads (a load in flight finishes, unused) and close
        the checkpoint store."""
        self._restoring.clear()
        if self._loader is not None:
            self._loader.shutdown(wait=False, cancel_futures=True)
            self._loader = None
        if self.checkpoints is not None:
            self.checkpoints.close()


@dataclass(frozen=True)
class Restore:
    """A partition's checkpoint being loaded in the background since ``started``."""

    loading: Future[Checkpoint | None]
    started: float


def _committed_offset(consumer: Any, tp: TopicPartition) -> int | None:
    """The group's committed offset of ``tp``; None if there is none or it cannot be read."""
    try:
        offset = consumer.committed(tp)
    except KafkaError as exc:
        log.warning("cannot read the committed offset of partition %d: %s", tp.partition, exc)
        return None
    return None if offset is None else int(offset)
