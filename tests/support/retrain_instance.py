"""One instance's retraining on a shared registry, in a process of its own, as a service
replica would run it: asks for a retraining run again and again while its runs are
skipped, until one runs or, skipped, it finds ``WORKDIR/proceed``.

Run as ``python -m tests.support.retrain_instance REGISTRY TICKS WORKDIR NAME``. Appends
each run's outcome (``forecaster_retrain_last_run_info``) to ``WORKDIR/NAME.outcomes``
and ends by writing ``WORKDIR/NAME.json``: those outcomes and its
``forecaster_retrains_total{outcome="skipped"}``. The fit (in the training child) is
``training_fits.timed``: it records its run in ``WORKDIR/runs`` and waits for
``WORKDIR/proceed``.
"""

import json
import sys
import time
from pathlib import Path

from forecaster.config import Settings
from forecaster.core.engine import Engine
from forecaster.core.features import FeatureParams
from forecaster.io.files import CsvSource
from forecaster.model.spec import ModelSpec
from forecaster.ops.metrics import Metrics
from forecaster.params import engine_params
from forecaster.retraining.coordinator import Retrainer, RetrainPolicy
from forecaster.retraining.feed import StepFeed
from forecaster.retraining.registry import Registry
from forecaster.retraining.trainer import NamedFit
from tests.support.models import random_stepper
from tests.support.retrains import last_run, runs

SPEC = ModelSpec(cell="gru", layers=1, units=4)
RETRY_S = 0.1  # between two requests of an instance whose runs were skipped


def instance(registry: Path, ticks: Path, workdir: Path) -> Retrainer:
    """An engine that has seen ``ticks`` and its live Retrainer, fitting ``timed``."""
    policy = RetrainPolicy(registry_poll_s=0)
    feed = StepFeed(policy.bootstrap_steps, first_model=False)
    engine = Engine(
        engine_params(Settings(min_history=8)), random_stepper(SPEC, seed=5), recorder=feed
    )
    engine.process(CsvSource(ticks, 100_000).poll(0.0).parse().ticks)  # type: ignore[union-attr]
    params = {"runs": str(workdir / "runs"), "proceed": str(workdir / "proceed"), "units": 4}
    fit = NamedFit("tests.support.training_fits:timed", params)
    return Retrainer(engine, feed, fit, policy, FeatureParams(min_history=8),
                     registry=Registry(registry), metrics=Metrics())  # fmt: skip


def main(registry: Path, ticks: Path, workdir: Path, name: str) -> None:
    retrainer = instance(registry, ticks, workdir)
    outcomes: list[str] = []
    while not outcomes or (outcomes[-1] == "skipped" and not (workdir / "proceed").exists()):
        retrainer.request()
        seen = runs(retrainer)
        while runs(retrainer) == seen:
            retrainer.pending()
            time.sleep(RETRY_S)
        outcomes.append(last_run(retrainer)["outcome"])
        with (workdir / f"{name}.outcomes").open("a") as log:
            log.write(outcomes[-1] + "\n")
    skipped = runs(retrainer, "skipped")
    (workdir / f"{name}.json").write_text(json.dumps({"outcomes": outcomes, "skipped": skipped}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
