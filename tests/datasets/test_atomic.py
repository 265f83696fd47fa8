"""Atomic writes and the clean-up of temporaries that a killed write leaves behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from datasets.atomic import atomic_path, remove_stale_temporaries, write_text


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
