"""The run layer's expected failures, each a ``shared.RosettaError``.

The command lines (``rosetta``, ``python -m torch_impl|tf_impl``) print a ``RosettaError`` as
one ``error: ...`` line and exit with status 2; any other exception is a bug and keeps its
traceback (``--traceback`` shows it for these too). Each class also derives from the built-in
type of its kind of failure (``ValueError``, ``OSError``, ...), so ``except ValueError`` still
catches a bad flag. The others: ``shared.parity.weights.WeightsError`` and
``shared.run.datasets.DatasetNotFound``. :class:`CheckpointError` is also importable from
each framework's ``checkpoint`` module, which raises it.
"""

from __future__ import annotations

from shared import RosettaError

__all__ = [
    "CheckpointError",
    "CheckpointWriteError",
    "ConfigError",
    "FileFormatError",
    "MissingFileError",
    "NonFiniteError",
    "RosettaError",
    "RunDirError",
]


class ConfigError(RosettaError, ValueError):
    """A bad value of a flag, a config field or an environment variable; the message names it."""


class RunDirError(RosettaError, ValueError):
    """A run directory that cannot be used: a file, not writable, holding another run without
    ``--resume`` / ``--overwrite``, or locked by a run that is writing to it now."""


class FileFormatError(RosettaError, ValueError):
    """A file given to a command that cannot be read (not JSON, another layout); the message
    names the file."""


class MissingFileError(RosettaError, FileNotFoundError):
    """A file a command needs is not there; the message names it and says how to make it."""


class NonFiniteError(RosettaError, FloatingPointError):
    """Training reached a NaN or infinite loss or weight; the message names the last finite
    checkpoint."""


class CheckpointError(RosettaError, RuntimeError):
    """A checkpoint could not be read or does not fit the model; the message says which."""


class CheckpointWriteError(RosettaError, OSError):
    """A checkpoint could not be written (a full disk, a read-only folder); the message says
    whether the previous one is intact."""
