"""Named errors. The library raises these; the CLI turns them into one ``Error: ...`` line.

Every message says what is wrong and what to do about it.
"""


class LandscapeError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(LandscapeError):
    """A config value, flag or spec is malformed or unknown."""


class CheckpointError(LandscapeError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


class DataError(LandscapeError):
    """A data spec cannot be resolved or its files cannot be read."""


class DirectionError(LandscapeError):
    """A direction cannot be built, loaded, or is degenerate."""


class SurfaceFileError(LandscapeError):
    """A surface file is unreadable, of another schema, or belongs to another config."""


class LandscapeWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints ``warning: ...``)."""
