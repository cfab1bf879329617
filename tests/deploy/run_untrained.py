"""`forecaster run` serving an untrained (random-weight) model: a stand-in for the console
script in the Prometheus test.

It builds and promotes the model in the ``--model-dir`` it is given, then hands its
arguments to the `forecaster` command line, all in one process (serving a saved model
needs no TensorFlow)::

    python -m tests.deploy.run_untrained run --model-dir DIR --input TICKS.csv ...
"""

import sys
from pathlib import Path

from forecaster import cli
from forecaster.core.features import FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.retraining.registry import Registry
from tests.support.models import random_stepper


def promote_untrained_model(model_dir: Path) -> str:
    registry = Registry(model_dir)
    model = random_stepper(ModelSpec(cell="lstm", layers=1, units=8), seed=3)
    version = registry.save(model, FeatureParams(), {"note": "untrained test model"})
    registry.promote(version)
    return version


if __name__ == "__main__":
    arguments = sys.argv[1:]
    promote_untrained_model(Path(arguments[arguments.index("--model-dir") + 1]))
    sys.exit(cli.main(arguments))
