"""Atomic writes (file modes, errors naming the target) and the clean-up of temporaries a killed write leaves."""

from __future__ import annotations

import errno
import os
import pickle
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from datasets.atomic import atomic_path, remove_stale_temporaries, write_text
from datasets.errors import FileWriteError


def test_only_the_temporaries_of_atomic_writes_are_removed(tmp_path: Path):
    run = tmp_path / "run"
    (run / "covidx_pp" / "train").mkdir(parents=True)
    (run / ".prefect" / "results").mkdir(parents=True)
    stale = []
    for target in (run / "covidx_pp" / "train" / "film-1.png", run / "covidx_pp" / "manifest.csv",
                   run / "config.yaml", run / "text" / "detections"):
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
        os.close(handle)
        stale.append(Path(name))  # what a SIGKILL between mkstemp and the rename leaves
    kept = [run / "covidx_pp" / "train" / "film-1.png", run / ".hidden-user-file", run / ".gitignore",
            run / "covidx_pp" / ".film.png.notrandom.jpg", run / ".prefect" / "results" / ".x.png.abcdefgh.png"]
    for path in kept:
        write_text(path, "keep")
    assert sorted(remove_stale_temporaries(run, skip=(".prefect",))) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert all(path.read_text() == "keep" for path in kept)
    assert remove_stale_temporaries(run, skip=(".prefect",)) == []


def test_a_finished_atomic_write_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "a" / "table.csv"
    with atomic_path(target) as temporary:
        temporary.write_text("x")
    assert target.read_text() == "x"
    assert remove_stale_temporaries(tmp_path) == []


@pytest.fixture
def restore_umask() -> Iterator[None]:
    """Put the process umask back after a test that sets it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o002, 0o664), (0o022, 0o644)], ids=["umask-002", "umask-022"])
def test_written_files_get_the_mode_open_would_give(tmp_path: Path, restore_umask: None, mask: int, mode: int):
    """0o666 less the umask, as `open(path, "w")` gives a new file (not mkstemp's 0o600), so a group can share
    a cleaned dataset; an existing target is replaced by a new file and does not keep its mode."""
    os.umask(mask)
    new, old, handle = tmp_path / "sub" / "new.csv", tmp_path / "old.csv", tmp_path / "handle.png"
    old.write_text("old")
    old.chmod(0o600)
    write_text(new, "x")
    write_text(old, "y")
    with atomic_path(handle) as temporary, temporary.open("wb") as stream:  # how image writers use it
        stream.write(b"z")
    for path in (new, old, handle):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
    plain = tmp_path / "plain.csv"
    with plain.open("w"):
        pass
    assert stat.S_IMODE(plain.stat().st_mode) == mode


def test_a_file_name_too_long_names_the_target_and_leaves_nothing(tmp_path: Path):
    target = tmp_path / ("n" * 296 + ".csv")  # 300 characters: more than any Linux file system takes
    with pytest.raises(FileWriteError) as caught:
        write_text(target, "x")
    assert str(caught.value) == f"{target}: file name too long"
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENAMETOOLONG
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENAMETOOLONG
    assert list(tmp_path.iterdir()) == []


def test_a_long_name_that_fits_is_written_though_its_temporary_is_cut(tmp_path: Path):
    target = tmp_path / ("n" * 246 + ".csv")  # 250 characters: the temporary's own would be 264
    with atomic_path(target) as temporary:
        assert len(temporary.name) <= 255 and temporary.name.endswith(".csv")
        assert remove_stale_temporaries(tmp_path) == [temporary]  # still recognised as a temporary
        temporary.write_text("x")
    assert target.read_text() == "x"
    assert list(tmp_path.iterdir()) == [target]


def test_a_full_disk_names_the_target_and_keeps_the_old_file(tmp_path: Path, monkeypatch):
    """ENOSPC is simulated (a real full disk cannot be made in a test): the write gets half of its bytes out,
    then fails as a full disk does."""
    target = tmp_path / "manifest.csv"
    target.write_text("old")

    def full_disk(self: Path, data: bytes) -> int:
        with self.open("wb") as handle:
            handle.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(FileWriteError) as caught:
        write_text(target, "new contents")
    assert str(caught.value) == f"{target}: no space left on device"
    assert caught.value.errno == errno.ENOSPC and caught.value.__cause__.errno == errno.ENOSPC
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # crosses Dask workers intact
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_other_errors_of_the_write_pass_unchanged(tmp_path: Path):
    target = tmp_path / "table.csv"
    with pytest.raises(FileNotFoundError), atomic_path(target):
        (tmp_path / "missing").read_text()  # e.g. reading a source inside the write
    with pytest.raises(FileWriteError, match=r"inner\.csv: no space"), atomic_path(target):
        raise FileWriteError(errno.ENOSPC, "no space left on device", str(tmp_path / "inner.csv"))
    assert list(tmp_path.iterdir()) == []
