"""Atomic file writes (write to a temporary file beside the target, then rename over it) and file hashes."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import secrets
import string
from collections.abc import Iterator
from pathlib import Path

from datasets.errors import FileWriteError

# Bytes in one file name on ext4, XFS, btrfs, tmpfs and APFS.
_NAME_MAX = 255
_RANDOM = string.ascii_lowercase + string.digits + "_"
# Failures about the output's place rather than its content, reported with the target's path (the OSError
# names the temporary, or no file at all) and in words.
_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.ENAMETOOLONG: "file name too long"}


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path` in one rename.

    A crash or exception leaves the old file (or no file) and removes the temporary one, so a
    half-written file never appears under the final name. The file gets the mode `open(path, "w")` gives a
    new file, 0o666 less the umask; an existing target's mode is not kept: the rename puts a new file (a new
    inode, owned by this process) in its place, as `mv` does. A disk that is full (ENOSPC, EDQUOT) or a name
    too long (ENAMETOOLONG) raises FileWriteError naming `path`.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _create_temporary(path)
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        if isinstance(error, FileWriteError) or error.errno not in _REASONS:
            raise
        raise FileWriteError(error.errno, _REASONS[error.errno], str(path)) from error
    finally:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def _create_temporary(path: Path) -> Path:
    """A new empty file beside `path`, created with mode 0o666 as `open` does, so the kernel applies the umask
    and any default ACL. The umask is never read: reading it means setting it for a moment, for every thread."""
    while True:
        temporary = path.with_name(_temporary_name(path.name, path.suffix))
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temporary
        except FileExistsError:
            continue


def _temporary_name(name: str, suffix: str) -> str:
    """"." + `name` + "." + 8 random characters + `suffix` (the form `_TEMPORARY` matches); a long `name` is
    cut, keeping its `suffix`, so that the temporary fits in a file name whenever `name` does (and its suffix
    is at most 122 bytes)."""
    tag = "".join(secrets.choice(_RANDOM) for _ in range(8))
    room = _NAME_MAX - len(os.fsencode(f"..{tag}{suffix}"))
    if len(os.fsencode(name)) > room:
        stem = os.fsencode(name[:len(name) - len(suffix)])[:max(room - len(os.fsencode(suffix)), 0)]
        name = stem.decode("utf-8", "ignore") + suffix
    return f".{name}.{tag}{suffix}"


# The temporary name `atomic_path` gives: "." + the target's name (cut when long) + "." + 8 random characters
# + the target's suffix.
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


MISSING = "missing"  # file_sha256 of a file that is not there or cannot be read


def file_sha256(path: str | Path | None) -> str:
    """`sha256_of` the file, or MISSING when there is none or it cannot be read (what depends on it is redone
    once it is back). Computed once per process while the file's size and modification time (ns) stay the same:
    a flow names every image in several cache keys, and the review page checks every decided film on each load."""
    if path is None:
        return MISSING
    try:
        status = Path(path).stat()
        return _sha256_while_unchanged(Path(path), status.st_size, status.st_mtime_ns)
    except OSError:
        return MISSING


@functools.cache  # one short string per file: bounded by the dataset
def _sha256_while_unchanged(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (hex)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
