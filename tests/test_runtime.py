"""The serving runtime: one BLAS thread (tests/test_replay.py), a malloc that keeps the
memory a batch frees, so the next batch faults no pages in again, and start-up's objects
frozen out of the garbage collector's scans."""

import gc
import subprocess
import sys

import pytest

from forecaster.runtime import serving_runtime

# Steps an engine at 1,000 series and prints the minor page faults of its last 10 batches.
STEADY_STATE_FAULTS = """
import resource, sys
import numpy as np
from forecaster.core.engine import Engine, EngineParams
from forecaster.model.spec import ModelSpec
from forecaster.runtime import keep_freed_memory
from tests.support.models import random_stepper
from tests.support.ticks import columns

if sys.argv[1] == "kept":
    assert keep_freed_memory()
params = EngineParams(max_series=0)
engine = Engine(params, random_stepper(ModelSpec(cell="lstm", layers=2, units=32)))
names, rng = [f"S{i}" for i in range(1000)], np.random.default_rng(0)
batches = [columns(names, [t] * 1000, list(50 * np.exp(rng.normal(0, 0.001, 1000))))
           for t in range(1, params.features.min_history + 20)]
for batch in batches[:-10]:
    engine.process(batch)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for batch in batches[-10:]:
    engine.process(batch)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def steady_state_faults(malloc: str) -> int:
    run = subprocess.run([sys.executable, "-c", STEADY_STATE_FAULTS, malloc],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(run.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_kept_memory_spares_each_batch_its_page_faults() -> None:
    default, kept = steady_state_faults("default"), steady_state_faults("kept")
    assert default > 1000  # the batch's arrays faulted in again, batch after batch
    assert kept < default / 20


def test_what_start_up_built_is_out_of_the_collectors_sight_while_serving() -> None:
    """A full collection scans only what serving made, not every object start-up left
    alive (those scans were the Kafka service's p99 latency): frozen inside, as before
    after."""
    built = [[index] for index in range(1000)]  # start-up's objects, tracked by gc
    before = gc.get_freeze_count()
    with serving_runtime():
        assert gc.get_freeze_count() >= before + len(built)
        made = [[index] for index in range(10)]
        assert all(gc.is_tracked(item) for item in made)
    assert gc.get_freeze_count() == before
