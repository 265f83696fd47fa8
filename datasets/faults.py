"""Transient I/O faults versus bad input, told apart in the reasons the per-image stages record.

Every per-image stage records a skipped image with the reason "<ExceptionType>: <message>". Bad input
(a `datasets.errors.DatasetError`: corrupt, missing, too large, ...) stays bad however often it is
read again; an operating-system I/O error (EIO from a failing disk, a stale network mount, a timeout)
may not. The flow retries a task whose images failed only in the second way, then keeps the record.
"""

from __future__ import annotations

import builtins

# OSError subclasses that a retry does not cure.
_PERMANENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def reason_of(error: BaseException) -> str:
    """The reason recorded for a skipped image: "<ExceptionType>: <message>"."""
    return f"{type(error).__name__}: {error}"


def is_transient(reason: str) -> bool:
    """Whether a recorded reason (see `reason_of`) is an I/O error that a retry may cure."""
    kind = getattr(builtins, reason.split(":", 1)[0].strip(), None)
    return isinstance(kind, type) and issubclass(kind, OSError) and not issubclass(kind, _PERMANENT)
