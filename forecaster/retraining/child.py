"""Where a retraining run executes: inline, or in a spawned child process that leaves
serving its core.

``run_job`` is the run itself: fit a candidate on the head of every series, judge it on
the tail against the serving model and naive (``forecaster.retraining.gate``), save it to
the registry with its figures. ``Execution`` runs it: inline in a replay; live in a
``TrainingProcess``, a child (a fresh interpreter, so neither the GIL nor TensorFlow's
thread pools are shared with the serving thread) polled at batch boundaries and stopped
once it runs past its timeout. The child starts in a session of its own, so a signal
meant for the service (Ctrl-C, ``timeout``, a process-group kill) never ends a fit
behind its back, even while the child is still importing; the service stops it itself.
The child lowers its priority (nice ``NICENESS``); the fit bounds TensorFlow's threads
itself.

Nothing crosses the process boundary pickled. The parent writes a temporary directory::

    sequences.npz    the history window, per series (read with allow_pickle=False)
    serving.npz      the serving model's weights, in the registry's format (if one serves)
    job.json         the fit (a NamedFit: function name and JSON parameters), holdout,
                     margin, feature params, history window summary, registry directory
    result.json      written by the child (atomically): version, the gate's verdict,
                     training details, or the error it ran into
    candidate.npz    the candidate's weights, in the registry's format

The parent polls ``finished()`` at batch boundaries and reads ``result()`` without
TensorFlow. ``stop()`` terminates the child (then kills it) and removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecaster.core.features import FeatureParams
from forecaster.durable import write_atomically
from forecaster.errors import ConfigError, TrainingError
from forecaster.faults import internal_error_detail
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.retraining.dataset import Sequence, load_sequences, save_sequences
from forecaster.retraining.gate import Verdict, judge, split_holdout
from forecaster.retraining.registry import Registry
from forecaster.retraining.trainer import Fit, NamedFit
from forecaster.retraining.weights import load_weights, save_weights

log = logging.getLogger(__name__)

NICENESS = 10  # the child yields the CPU to the serving process whenever both want it
STOP_GRACE_S = 2.0  # after SIGTERM, how long the child gets before SIGKILL
JOB_FILE, RESULT_FILE = "job.json", "result.json"
SEQUENCES_FILE, SERVING_FILE, CANDIDATE_FILE = "sequences.npz", "serving.npz", "candidate.npz"
CHILD_CODE = "import sys; from forecaster.retraining import child as t; t.child_main(sys.argv[1])"


@dataclass(frozen=True)
class TrainingJob:
    """How a candidate is judged and where it is recorded (JSON, for the child)."""

    holdout: float
    margin: float
    features: FeatureParams
    window: dict[str, Any]  # what the history window covers, for the version's metadata
    registry: Registry | None = None

    def to_json(self) -> dict[str, Any]:
        return {"holdout": self.holdout, "margin": self.margin,
                "features": self.features.to_dict(), "window": self.window,
                "registry": str(self.registry.root) if self.registry else None}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingJob:
        registry = Registry(Path(data["registry"])) if data["registry"] else None
        features = FeatureParams(**data["features"])
        return cls(data["holdout"], data["margin"], features, data["window"], registry)


@dataclass(frozen=True)
class Candidate:
    """A fitted, judged and recorded candidate."""

    version: str
    verdict: Verdict
    details: dict[str, Any]
    stepper: Stepper


@dataclass(frozen=True)
class Finished:
    """The end of a run: its candidate, or the error it ran into."""

    candidate: Candidate | None
    error: str = ""


def run_job(
    job: TrainingJob, fit: Fit, sequences: list[Sequence], serving: Stepper | None
) -> Candidate:
    """Fit on the head of each series, judge on its tail, save to the registry (if any).

    Raises what ``fit`` raises, or TrainingError when the candidate's forecasts are not
    finite.
    """
    holdout = split_holdout(sequences, job.holdout)
    trained = fit(holdout.fit)
    verdict = judge(trained.stepper, serving, holdout, job.margin)
    details = {
        **trained.details,
        "data_window": job.window,
        "validation": verdict.to_dict(),  # the key `models list` and existing registries read
        "retraining": {"holdout": job.holdout, "margin": job.margin},
    }
    version = trained.stepper.version
    if job.registry is not None:
        version = job.registry.save(trained.stepper, job.features, details, trained.keras_model)
    return Candidate(version, verdict, details, trained.stepper)


class Execution:
    """Runs jobs inline (``background`` False: a replay) or each in a TrainingProcess, one
    at a time, polled at batch boundaries and stopped past ``timeout_s``. A background
    ``fit`` must be a NamedFit, which the child process rebuilds."""

    def __init__(self, fit: Fit, timeout_s: float, background: bool) -> None:
        if background and not isinstance(fit, NamedFit):
            raise ConfigError("a background Retrainer fits in a child process: give it a NamedFit")
        self.fit = fit
        self.timeout_s = timeout_s
        self.background = background
        self.training: TrainingProcess | None = None  # the background run under way

    @property
    def running(self) -> bool:
        return self.training is not None

    def start(
        self, job: TrainingJob, sequences: list[Sequence], serving: Stepper | None
    ) -> Finished | None:
        """Run ``job``: inline, its end; in the background, None (``poll`` gives the end).
        Raises what starting a TrainingProcess raises."""
        if isinstance(self.fit, NamedFit) and self.background:
            self.training = TrainingProcess(job, self.fit, sequences, serving)
            return None
        try:
            return Finished(run_job(job, self.fit, sequences, serving))
        except Exception as exc:  # whatever a run runs into, the serving model keeps serving
            return Finished(None, internal_error_detail(exc))

    def poll(self) -> Finished | None:
        """The end of the background run once it has ended, or run past ``timeout_s`` (then
        it is stopped); None while it runs, or when none does."""
        training = self.training
        if training is None:
            return None
        if not training.finished():
            if time.monotonic() - training.started <= self.timeout_s:
                return None
            training.stop()
            self.training = None
            return Finished(None, f"timed out after {self.timeout_s:g} s")
        self.training = None
        try:
            return Finished(training.result())
        except Exception as exc:
            return Finished(None, internal_error_detail(exc))
        finally:
            training.stop()

    def stop(self) -> None:
        """End the background run, if any (service shutdown): it comes to no outcome."""
        if self.training is not None:
            log.info("stopping the retraining process %s", self.training.pid)
            self.training.stop()
            self.training = None


class TrainingProcess:
    """``run_job`` in a spawned child: poll ``finished()``, read ``result()``, ``stop()``."""

    def __init__(
        self, job: TrainingJob, fit: NamedFit, sequences: list[Sequence], serving: Stepper | None
    ) -> None:
        self.started = time.monotonic()
        self.directory = Path(tempfile.mkdtemp(prefix="forecaster-retrain-"))
        try:
            save_sequences(self.directory / SEQUENCES_FILE, sequences)
            described = None
            if serving is not None:
                save_weights(self.directory / SERVING_FILE, serving)
                described = {"spec": serving.spec.to_dict(), "version": serving.version}
            request = {"job": job.to_json(), "serving": described,
                       "fit": {"function": fit.function, "params": fit.params}}  # fmt: skip
            (self.directory / JOB_FILE).write_text(json.dumps(request))
            self.process = subprocess.Popen(
                [sys.executable, "-c", CHILD_CODE, str(self.directory)],
                start_new_session=True,
                env=os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, sys.path))},
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def finished(self) -> bool:
        return self.process.poll() is not None

    def result(self) -> Candidate:
        """The finished child's candidate; TrainingError (with its exit code) if it failed."""
        code = self.process.wait()
        path = self.directory / RESULT_FILE
        record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        if code != 0 or "error" in record:
            error = record.get("error", "no result")
            raise TrainingError(f"training process exited with code {code}: {error}")
        spec = ModelSpec(**record["spec"])
        stepper = load_weights(self.directory / CANDIDATE_FILE, spec, record["version"])
        verdict = Verdict(**record["verdict"])
        return Candidate(record["version"], verdict, record["details"], stepper)

    def stop(self) -> None:
        """End the child (SIGTERM, SIGKILL after STOP_GRACE_S) and remove its directory."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_GRACE_S)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def child_main(directory: str) -> None:
    """The child process: run the job in ``directory`` and write ``result.json``."""
    os.nice(NICENESS)
    _exit_with(os.getppid())
    folder = Path(directory)
    try:
        request = json.loads((folder / JOB_FILE).read_text())
        job = TrainingJob.from_json(request["job"])
        serving = None
        if request["serving"] is not None:
            spec = ModelSpec(**request["serving"]["spec"])
            serving = load_weights(folder / SERVING_FILE, spec, request["serving"]["version"])
        sequences = load_sequences(folder / SEQUENCES_FILE)
        candidate = run_job(job, NamedFit(**request["fit"]), sequences, serving)
        save_weights(folder / CANDIDATE_FILE, candidate.stepper)
    except Exception as exc:  # reported to the parent, which counts the run as failed
        _write_result(folder, {"error": internal_error_detail(exc)})
        sys.exit(1)
    _write_result(folder, {"version": candidate.version, "spec": candidate.stepper.spec.to_dict(),
                           "verdict": candidate.verdict.to_dict(),
                           "details": candidate.details})  # fmt: skip


def _exit_with(parent: int) -> None:
    """Exit when ``parent`` is gone: a parent killed with SIGKILL cannot stop its child."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _write_result(folder: Path, record: dict[str, Any]) -> None:
    """Write the result whole or not at all: a child killed mid-write leaves no result."""
    write_atomically(folder / RESULT_FILE, json.dumps(record).encode())
