"""What the gate's verdict on a candidate leads to in the serving instance.

Promoted: the candidate is loaded back from the registry (checked as a restart would
load it, without TensorFlow), recorded as the promoted version, and handed to the
pipeline, which re-warms every series' state and swaps it in between two batches.
Rejected: it stays in the registry with its figures, and the serving model serves on.
Either way the registry is pruned to ``keep_versions``. A candidate promoted in shadow
(``forecaster.retraining.shadow``) is stepped from the registry's copy, and promoted
from it the same way once its shadow says so.
"""

from __future__ import annotations

import logging

from forecaster.core.features import FeatureParams
from forecaster.errors import ArtifactError
from forecaster.model.stepper import Stepper
from forecaster.retraining.child import Candidate
from forecaster.retraining.registry import Registry

log = logging.getLogger(__name__)


class Promotion:
    """Acts on verdicts for one registry (None: models live in memory only)."""

    def __init__(self, registry: Registry | None, features: FeatureParams, keep: int) -> None:
        self.registry = registry
        self.features = features
        self.keep = keep

    def settle(self, candidate: Candidate) -> Stepper | None:
        """The model to serve from the next batch, or None if the candidate was rejected.

        ArtifactError if a promoted candidate cannot be loaded back or recorded.
        """
        if not candidate.verdict.promote:
            self._prune()
            return None
        return self.serve(candidate.version, candidate.stepper)

    def serve(self, version: str, stepper: Stepper) -> Stepper:
        """Promote ``version`` (``stepper`` in memory): the model to serve, loaded back
        from the registry. ArtifactError if it cannot be loaded back or recorded."""
        registry = self.registry
        if registry is None:
            return stepper
        serving = registry.load(version, self.features).stepper
        registry.promote(version)
        self._prune()
        return serving

    def trial(self, candidate: Candidate) -> Stepper:
        """The candidate to step in shadow, loaded back from the registry as ``serve``
        would load it (ArtifactError if it cannot be)."""
        if self.registry is None:
            return candidate.stepper
        return self.registry.load(candidate.version, self.features).stepper

    def reject(self) -> None:
        """A candidate was rejected in shadow: it stays in the registry, pruned in time."""
        self._prune()

    def _prune(self) -> None:
        """Keep the registry to ``keep`` versions; a failure is only logged, since the
        run's outcome (its version saved, maybe promoted) stands."""
        if self.registry is None:
            return
        try:
            self.registry.prune(self.keep)
        except ArtifactError as exc:
            log.warning("cannot prune the model registry: %s", exc)
