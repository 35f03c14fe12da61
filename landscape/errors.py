"""Named errors. The library raises these; the CLI turns them into one ``Error: ...`` line.

Every message says what is wrong and what to do about it.
"""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The cause in a few words: the first line of an exception's message (its type's name when
    it has none), shortened to ``limit`` characters when given."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


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


class AlignError(LandscapeError):
    """Two models cannot be aligned: other architectures, or units that cannot be permuted."""
