"""User-facing errors: each carries one clear line that the CLI and UI show as-is."""


class DistillganError(Exception):
    """A mistake or condition the user can act on; never shown with a traceback."""


class CorpusError(DistillganError):
    """The audio corpus is empty, unreadable or no longer matches the model."""


class ModelFileError(DistillganError):
    """A .distillgan file is missing, broken, hostile, too new or lacks a stage."""


class DamagedModelFileError(ModelFileError):
    """The file's bytes are no readable model (not HDF5, empty, truncated, corrupt): unlike a newer
    schema or a file that cannot be opened now, there is nothing in it that a new model could lose."""


class ModelLockedError(ModelFileError):
    """Another process holds the model's writer lock."""


class ConfigError(DistillganError):
    """A training recipe or stored config has a wrong key, type or value."""


class TrainingError(DistillganError):
    """Training stopped for a reason the user must know (e.g. repeated non-finite losses)."""


class VocoderUnavailableError(DistillganError):
    """The requested vocoder cannot be used (not trained, not downloadable)."""
