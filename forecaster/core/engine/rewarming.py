"""A model swap re-warmed off the serving loop: ``RewarmJob``.

A swap gives every series the recurrent state the new model reaches over its history
ring: at 100,000 series and rings of 512 steps, many seconds of work, which must not
stop the serving loop. A job does it on a thread of its own while the old model goes
on serving, and hands the states over once they are all there:

- at each batch boundary the loop copies the rings of the next ``chunk_rows`` series
  not copied yet (a few milliseconds) and the thread runs the model over the copy: the
  re-warm ``Engine.swap_model`` would give those series at that boundary;
- each batch committed meanwhile hands its warm steps to the thread (``follow``), which
  steps the model on them for the series it has re-warmed, as serving it would have
  (a series not re-warmed yet has them in the ring it is copied with later);
- at the first boundary where every series held was copied and re-warmed and the thread
  has at most the last batch or two left to follow, ``advance`` waits for those and
  returns the states, by slot, for the engine to install in one step.

The thread does its tasks in the order the loop handed them over, so each series'
state is exactly what ``swap_model`` at the boundary its ring was copied, then the new
model serving each warm tick since, would hold; a series that did not tick since holds
what ``swap_model`` at the install gives (``tests/core/engine/test_rewarming.py``).
Re-running the whole ring of every series that ticked meanwhile instead would not
converge under load: at 100,000 series every series ticks during one re-warm.

A series created, evicted or taken out meanwhile is known by its slot's uid, which
changes; one put back (``forget``) is copied again. A rolled-back batch never reaches
the job: only committed batches are followed.

>>> from forecaster.core.table import SeriesTable
>>> from forecaster.model.spec import ModelSpec
>>> from forecaster.model.stepper import LayerWeights
>>> layer = LayerWeights(np.ones((4, 3), np.float32), np.ones((1, 3), np.float32),
...                      np.zeros((2, 3), np.float32))
>>> model = Stepper(ModelSpec(cell="gru", layers=1, units=1, n_features=4), "v2", [layer],
...                 np.ones((1, 1), np.float32), np.zeros(1, np.float32))
>>> table = SeriesTable(ring_length=8, state_size=0, capacity=4)
>>> table.append_history(table.slots_for(["A", "B"]), np.ones(2), np.ones(2), np.ones(2, int))
>>> job = RewarmJob(model, table, chunk_rows=1)
>>> states = None
>>> while states is None:  # at each batch boundary, the loop serving meanwhile
...     states = job.advance()
>>> states.shape, bool((states[:2] != 0).all()), bool((states[2:] == 0).all())
((4, 1), True, True)
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.engine.pending import WarmSteps
from forecaster.core.engine.stepping import rewarm
from forecaster.core.features import model_inputs
from forecaster.core.table import SeriesTable, grown_to
from forecaster.model.stepper import Stepper

IntArray = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]
# Series per chunk: one chunk's ring copy is 2.5 MB at rings of 512 steps, a few ms of the
# loop's time, and its re-warm runs in cache (4,096 series took 2.05 s in blocks of 1,024,
# 2.78 s in one, lstm 2x32, one BLAS thread).
CHUNK_ROWS = 1024
# Ring copies being re-warmed at once: bounds the copies' memory while the thread always
# has the next one at hand.
CHUNKS_IN_FLIGHT = 2
# Python's switch interval while a job runs (the default is 5 ms): the loop thread, which
# releases the GIL in every larger NumPy call, waits up to this long to take it back from
# the thread. At 10,000 series (benchmarks/bench_swap.py) the longest gap between two
# polls during a swap was 108 ms at 0.5 ms against 356 ms at 5 ms.
SWITCH_INTERVAL_S = 0.0005
# The install waits for the thread to follow at most this many batches: the last one or
# two, milliseconds. While the last chunk is re-warmed hundreds of batches queue up behind
# it (800 ms of following at 10,000 series), which the thread works off meanwhile.
FOLLOWS_AT_INSTALL = 2


class RewarmJob:
    """Re-warms ``model``'s states for the series of ``table`` on a thread of its own,
    ``chunk_rows`` series at a time (Python switching threads every ``SWITCH_INTERVAL_S``
    meanwhile); the loop calls ``follow`` at each commit and
    ``advance`` at each batch boundary until it returns the states."""

    def __init__(self, model: Stepper, table: SeriesTable, chunk_rows: int = CHUNK_ROWS) -> None:
        self.model = model
        self.started = time.perf_counter()
        self._table = table
        self._chunk_rows = chunk_rows
        self._copied = np.zeros(table.capacity, np.int64)  # the uid whose ring went, by slot
        # The thread's: the states and the uid each slot's state belongs to.
        self._states = model.zero_state(table.capacity)
        self._owner = np.zeros(table.capacity, np.int64)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="rewarm")
        self._chunks: list[Future[None]] = []
        self._follows: deque[Future[None]] = deque()
        self._last: Future[None] | None = None
        self._cancelled = threading.Event()
        _SWITCHING.job_started()

    def follow(self, rounds: list[WarmSteps]) -> None:
        """Step the model on a committed batch's warm rounds, in order, for the series it
        has re-warmed (called at commit, on the loop)."""
        if rounds:
            owners = [self._table.uid[slots] for slots, *_ in rounds]
            self._follows.append(self._submit(self._step, rounds, owners))

    def forget(self, slots: IntArray) -> None:
        """The state of ``slots`` was replaced (a partition put back): copy them again."""
        self._copied[slots[slots < len(self._copied)]] = 0

    def advance(self) -> Float32Array | None:
        """At a batch boundary (no batch pending): hand the next chunk of rings to the
        thread; the states, by slot, once every series held is re-warmed, else None.
        Raises what the thread raised."""
        self._chunks = [chunk for chunk in self._chunks if not _done(chunk)]
        while self._follows and _done(self._follows[0]):
            self._follows.popleft()
        table = self._table
        if len(self._copied) < table.capacity:
            self._copied = grown_to(self._copied, table.capacity)
        active = table.active_slots()
        uncopied = active[self._copied[active] != table.uid[active]]
        if len(uncopied) and len(self._chunks) < CHUNKS_IN_FLIGHT:
            chunk = uncopied[: self._chunk_rows]
            self._copied[chunk] = table.uid[chunk]
            rings = _rings_of(table, chunk)
            self._chunks.append(self._submit(self._rewarm, chunk, table.uid[chunk], rings))
            return None
        if len(uncopied) or self._chunks or len(self._follows) > FOLLOWS_AT_INSTALL:
            return None
        self.settle()
        self.cancel()
        return self._states_of(active)

    def settle(self, timeout_s: float | None = None) -> None:
        """Wait until the thread has done every task handed over so far (tests and the
        benchmark, to know what the next ``advance`` hands over)."""
        if self._last is not None:
            self._last.result(timeout_s)

    def cancel(self) -> None:
        """Stop the thread (after the block in hand); the job is over."""
        if not self._cancelled.is_set():
            _SWITCHING.job_ended()
        self._cancelled.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _states_of(self, active: IntArray) -> Float32Array:
        """The thread's states as the table's recurrent array: zeros but where held."""
        table, states = self._table, self._states
        if len(states) < table.capacity:
            states = grown_to(states, table.capacity)
        states = states[: table.capacity]
        if not (self._owner[active] == table.uid[active]).all():
            raise RuntimeError("a re-warmed state belongs to another series")  # a bug
        states[table.uid == 0] = 0.0
        return states

    def _submit(self, task: Callable[..., None], *args: Any) -> Future[None]:
        self._last = self._executor.submit(task, *args)
        return self._last

    def _rewarm(self, slots: IntArray, owners: IntArray, rings: SeriesTable) -> None:
        """The thread: the states of ``slots`` from their copied ``rings``."""
        if self._cancelled.is_set():
            return
        self._room(int(slots.max(initial=0)) + 1)
        states = self.model.zero_state(len(slots))
        rewarm(self.model, rings, np.arange(len(slots)), len(slots), states)
        self._states[slots] = states
        self._owner[slots] = owners

    def _step(self, rounds: list[WarmSteps], owners: list[IntArray]) -> None:
        """The thread: step the re-warmed series of each round, as serving would."""
        for (slots, z, d, ts), owner in zip(rounds, owners, strict=True):
            if self._cancelled.is_set():
                return
            self._room(int(slots.max(initial=0)) + 1)
            held = self._owner[slots] == owner
            if not held.any():
                continue
            rows = slots[held]
            prediction, state = self.model.step(
                model_inputs(z[held], d[held], ts[held]), self._states[rows]
            )
            # As ``stepping.forecast_step`` does: an output not finite starts from zeros.
            state[~np.isfinite(prediction) | ~np.isfinite(state).all(axis=1)] = 0.0
            self._states[rows] = state

    def _room(self, slots: int) -> None:
        """The thread: grow its arrays to hold ``slots`` slots (the table doubles)."""
        if slots > len(self._owner):
            capacity = max(slots, 2 * len(self._owner))
            self._states = grown_to(self._states, capacity)
            self._owner = grown_to(self._owner, capacity)


class _SwitchInterval:
    """Python's switch interval at ``SWITCH_INTERVAL_S`` while any job runs (a swap's and a
    shadow's may overlap), and put back as it was after the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._before = sys.getswitchinterval()

    def job_started(self) -> None:
        with self._lock:
            if self._running == 0:
                self._before = sys.getswitchinterval()
                sys.setswitchinterval(min(SWITCH_INTERVAL_S, self._before))
            self._running += 1

    def job_ended(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                sys.setswitchinterval(self._before)


_SWITCHING = _SwitchInterval()


def _rings_of(table: SeriesTable, slots: IntArray) -> SeriesTable:
    """A table holding a copy of the rings of ``slots`` (row i is ``slots[i]``)."""
    copy = SeriesTable(table.ring_length, 0, capacity=max(len(slots), 1), clip=table.codec.clip)
    for name in ("ring", "ring_newest_ts", "ring_track_ts", "ring_count"):
        getattr(copy, name)[: len(slots)] = getattr(table, name)[slots]
    return copy


def _done(future: Future[None]) -> bool:
    """Whether ``future`` is done; raises what its task raised."""
    if not future.done():
        return False
    future.result()
    return True
