"""The engine: valid ticks in, one forecast per accepted tick out.

Per batch the engine maps series to slots, then steps in *rounds*: round k holds the
k-th tick of every series that ticked k+1 times or more, so each round touches each
series at most once and every round is one vectorised step across all its series
(in blocks of ``block_rows`` series). Several ticks of one series are thereby stepped
in order.

A tick whose ts is not after its series' last accepted ts is rejected, not stepped,
and so is a tick of a new series while ``max_series`` series are held. A series with
less than ``min_history`` returns, or any series while no model is loaded, gets the
naive forecast (its last price), flagged ``model_version="naive"``; so does a tick whose
model output (prediction, recurrent state or forecast) is not finite, and that series'
recurrent state starts again from zeros (counted in ``EngineResult.nonfinite``).

A processed batch is *pending* until ``commit()`` makes it final (its warm steps go to
the recorder, idle series are evicted) or ``rollback()`` puts every series it touched
back as it was, which it can because stepping kept an undo record of what it
overwrote. If stepping a batch raises, the batch is rolled back and its ticks are
stepped one at a time, each with its own undo record, so that only a tick whose own
step raises is rejected (``internal_error``).

>>> from forecaster.core.ticks import parse_messages
>>> engine = Engine(EngineParams())
>>> ticks = parse_messages([b'{"series":"X","ts":1,"price":2.0}',
...                         b'{"series":"X","ts":1,"price":2.5}']).ticks
>>> result = engine.process(ticks)
>>> result.forecasts.forecast.tolist(), [r.reason.value for r in result.rejects]
([2.0], ['ts_duplicate'])
>>> engine.rollback()
>>> len(engine.table), engine.commit()
(0, 0)

The package: ``engine`` (the Engine: pending batches, model swaps, partition moves),
``params``, ``results`` (ForecastBatch, the rejects), ``stepping`` (a batch stepped in
rounds, or tick by tick), ``rounds`` (grouping a batch's ticks into rounds), ``pending``
(a batch in progress and its undo records), ``shadow`` (a candidate stepped beside the
serving model, scored, never emitted) and ``eviction`` (idle series dropped on each
partition's event-time clock). Callers import from the package.
"""

from forecaster.core.engine.engine import Engine, PartitionState, StepRecorder
from forecaster.core.engine.params import EngineParams
from forecaster.core.engine.results import NAIVE, EngineResult, ForecastBatch, OrderReject
from forecaster.core.engine.rounds import row_blocks
from forecaster.core.engine.shadow import PairedErrors, ShadowModel

__all__ = [
    "NAIVE",
    "Engine",
    "EngineParams",
    "EngineResult",
    "ForecastBatch",
    "OrderReject",
    "PairedErrors",
    "PartitionState",
    "ShadowModel",
    "StepRecorder",
    "row_blocks",
]
