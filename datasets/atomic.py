"""Atomic file writes (write to a temporary file beside the target, then rename over it) and file hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path` in one rename.

    A crash or exception leaves the old file (or no file) and removes the temporary one, so a
    half-written file never appears under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


# The temporary name `atomic_path` gives: "." + the target's name + "." + mkstemp's 8 random characters + the
# target's suffix.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?$")


def remove_stale_temporaries(folder: str | Path, skip: tuple[str, ...] = ()) -> list[Path]:
    """Delete the temporaries that atomic writes killed mid-way (SIGKILL, power loss) left under `folder`,
    in every subfolder but those named in `skip`; returns them. Call it only while no other process writes
    there (e.g. holding the run folder's lock)."""
    removed = []
    for path in sorted(Path(folder).rglob(".*")):
        match = _TEMPORARY.match(path.name)
        if (match and path.is_file() and match["name"].endswith(match["suffix"] or "")
                and not set(skip) & set(path.relative_to(folder).parts)):
            path.unlink()
            removed.append(path)
    return removed


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (hex)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
