"""Named exceptions: every failure the service reports has a type of its own."""


class ForecasterError(Exception):
    """Base class of every error raised on purpose by forecaster."""


class ConfigError(ForecasterError):
    """A setting is missing, of the wrong type or out of range."""


class ArtifactError(ForecasterError):
    """A model artifact is missing, truncated, unsafe or does not match this build."""


class VersionNameError(ArtifactError):
    """A model version name that is no plain name (a path, empty, odd characters, too long)."""


class TrainingError(ForecasterError):
    """Training could not produce a usable model (too little data, NaN loss, ...)."""


class SourceError(ForecasterError):
    """A tick source cannot be read."""


class DeliveryError(ForecasterError):
    """A sink's destination did not acknowledge a batch: it is not committed, but redone."""
