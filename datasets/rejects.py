"""An image a per-image stage skipped: its filename, why, and whether a retry may cure it.

Every per-image stage (training's preload, prediction, iGOS++, text detection, COVIDx++) records a skipped
image as a `Rejected` and the run folder's rejected tables hold them as REJECTED_COLUMNS, the reason written
"<ExceptionType>: <message>". Bad input (a `datasets.errors.DatasetError`: corrupt, missing, too large, ...)
stays bad however often it is read again; an operating-system I/O error (EIO from a failing disk, a stale
network mount, a timeout) may not: the reject is `transient`, and the flow retries a task whose images
failed only that way, then keeps the record.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

REJECTED_COLUMNS = ("stage", "split", "filename", "reason")

# OSError subclasses that a retry does not cure.
_PERMANENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_transient(error: BaseException) -> bool:
    """Whether `error` is an operating-system I/O error that a retry may cure: a built-in OSError (EIO,
    TimeoutError, ConnectionError, ...) other than a missing file or a permission. The project's own
    errors (a DatasetError, a FileWriteError) are not: they name a problem a retry does not change."""
    kind = type(error)
    return (getattr(builtins, kind.__name__, None) is kind and issubclass(kind, OSError)
            and not issubclass(kind, _PERMANENT))


@dataclass(frozen=True)
class Rejected:
    """An image a stage skipped: its filename (as in the split file), why, and whether a retry may cure it."""

    filename: str
    reason: str
    transient: bool = False

    @classmethod
    def of(cls, filename: str, error: BaseException) -> Rejected:
        """The reject for `error` raised while reading `filename`: transient for an I/O error a retry may cure."""
        return cls(filename, f"{type(error).__name__}: {error}", is_transient(error))
