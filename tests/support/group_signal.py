"""Start a training process, then signal this process's whole group at once, as Ctrl-C
or ``timeout`` would while the child is still starting up.

Run as ``python -m tests.support.group_signal STARTED_FILE`` in a session of its own.
Prints ``survived`` if the child went on to run its fit (it touches STARTED_FILE), else
``ended <exit code>``; then stops the child and prints ``stopped <exit code>``.
"""

import os
import signal
import sys
import time
from pathlib import Path

from forecaster.core.features import FeatureParams
from forecaster.retraining.child import TrainingJob, TrainingProcess
from forecaster.retraining.trainer import NamedFit


def main(started: Path) -> None:
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # this process stays
    job = TrainingJob(holdout=0.2, margin=0.0, features=FeatureParams(), window={})
    fit = NamedFit("tests.support.training_fits:hang",
                   {"started": str(started), "ignore_sigterm": False})  # fmt: skip
    training = TrainingProcess(job, fit, [], None)
    os.killpg(0, signal.SIGINT)
    deadline = time.monotonic() + 300.0
    while not started.exists() and not training.finished():
        assert time.monotonic() < deadline, "the child neither ran its fit nor ended"
        time.sleep(0.05)
    print("survived" if started.exists() else f"ended {training.process.returncode}")
    training.stop()
    print(f"stopped {training.process.returncode}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
