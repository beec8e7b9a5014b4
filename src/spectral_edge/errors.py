"""One exception root for everything the user can cause.

The command line turns any :class:`SpectralEdgeError` into one line on stderr and exit
status 2, with no traceback. Library callers can catch the root or a specific subclass.
Messages say what was wrong, where (file, tensor), and what to do.
"""

from __future__ import annotations

from pathlib import Path


class SpectralEdgeError(Exception):
    """Root of all user-facing errors raised by spectral_edge."""


class ConfigError(SpectralEdgeError, ValueError):
    """An argument or option has an invalid value (bad flag, bad pattern, window too small...)."""


class CheckpointError(SpectralEdgeError):
    """A checkpoint (file or folder) cannot be used. ``path`` names it."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class EmptyFolderError(CheckpointError):
    """The folder holds no checkpoint that any reader recognises."""


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, not in the format its name says, or otherwise unreadable."""


class UnsafeCheckpointError(CheckpointError):
    """The file would need arbitrary unpickling to load; we refuse (weights_only=True only)."""


class ShapeMismatchError(CheckpointError):
    """A tensor changed shape (or appeared/disappeared) between checkpoints, or on resume."""


class NonFiniteError(CheckpointError):
    """A selected tensor holds NaN or Inf."""


class StateError(SpectralEdgeError):
    """A saved state (window, monitor) does not match the object it is loaded into."""


class MissingDependencyError(SpectralEdgeError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it
    (an ImportError too, so code that probes with ``except ImportError`` keeps working)."""
