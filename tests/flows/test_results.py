"""The run's stored task results are data: a tampered or foreign record is refused before it is decoded."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.results import ResultRecordError, check_result_record, in_run_folder, run_relative

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # uses the shared audit run (local_run)


class _Touch:
    """Unpickling this creates `path`: the proof that a pickle was (or was not) executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def records(run_dir: Path) -> dict[str, Path]:
    return {path.name.rsplit("-", 1)[0]: path for path in (run_dir / ".prefect" / "results").iterdir()}


def test_paths_inside_the_run_folder_are_stored_relative_and_read_back_inside_the_current_one():
    run = Path("/runs/nightly")
    assert run_relative("/runs/nightly/models/a.safetensors", run) == "<run>/models/a.safetensors"
    assert run_relative("/runs/nightly", run) == "<run>"
    for other in ("/runs/nightly2/models/a.safetensors", "/data/covidx/train", "data-0123abcd", "test", ""):
        assert run_relative(other, run) == other
    assert in_run_folder("<run>/models/a.safetensors", Path("/moved/here")) == "/moved/here/models/a.safetensors"
    assert in_run_folder("<run>", Path("/moved/here")) == "/moved/here"
    for other in ("/data/covidx/train", "data-0123abcd", "<runs>/x", ""):
        assert in_run_folder(other, Path("/moved/here")) == other


def test_the_flows_own_records_pass_and_altered_ones_are_refused(local_run, tmp_path):
    run_dir, _ = local_run
    stored = records(run_dir)
    assert {"data", "compare", "covidx-pp"} <= set(stored)
    for path in stored.values():  # every record the flow wrote is accepted
        check_result_record(path, path.read_bytes())
    record = json.loads(stored["data"].read_bytes())
    marker = tmp_path / "executed"

    def altered(change) -> bytes:
        copy = json.loads(json.dumps(record))
        change(copy)
        return json.dumps(copy).encode()

    pickled = base64.b64encode(pickle.dumps(_Touch(marker))).decode()
    cases = {
        "a raw pickle": pickle.dumps(_Touch(marker)),
        "truncated": stored["data"].read_bytes()[:100],
        "the pickle serializer": altered(lambda r: (r["metadata"]["serializer"].update(type="pickle",
                                                                                      picklelib="pickle"),
                                                    r.update(result=pickled))),
        "another decoder": altered(lambda r: r["metadata"]["serializer"].update(object_decoder="builtins.exec")),
        "a foreign class": altered(lambda r: r.update(result=json.dumps({"__class__": "subprocess.Popen",
                                                                        "data": ["touch", str(marker)]}))),
    }
    for name, content in cases.items():
        with pytest.raises(ResultRecordError, match="not written by cxr-audit"):
            check_result_record(stored["data"], content)
        assert not marker.exists(), name


def test_a_moved_run_folder_reruns_in_place_refuses_a_tampered_record_and_rebuilds_a_deleted_copy(
        local_run, tmp_path):
    """The run folder is copied elsewhere, one stored record is replaced by a pickle and one COVIDx++ image is
    deleted; the rerun is a new process, as a scheduled rerun is (within one process Prefect keeps the
    records it wrote in memory and never reads them back). It refuses the record by name and executes
    nothing, reuses every result of its own folder (stored relative to it) and never the original folder's,
    and writes the deleted image again."""
    run_dir, summary = local_run
    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy)
    assert not [path for path in records(copy).values() if str(run_dir) in path.read_text()]
    marker = tmp_path / "executed"
    tampered = records(copy)["compare"]
    tampered.write_bytes(pickle.dumps(_Touch(marker)))
    cleaned = pd.read_csv(copy / "covidx_pp" / "manifest.csv").query("status == 'cleaned'").output.iloc[0]
    (copy / "covidx_pp" / cleaned).unlink()
    models = {name: (copy / "models" / name).stat().st_mtime_ns for name in ("a.safetensors", "b.safetensors")}
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    rerun = subprocess.run([str(Path(sys.executable).parent / "cxr-audit"), "demo", "--config",
                            str(copy / "config.yaml"), "--out", str(copy)], env=env, capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "text detection: started (" in rerun.stderr and "time per stage (timings.csv):" in rerun.stderr
    assert not marker.exists()
    assert f"{tampered}: not a JSON result record; this result was not written by cxr-audit" in rerun.stderr
    check_result_record(tampered, tampered.read_bytes())  # the task ran again and wrote a sound record
    assert (copy / "covidx_pp" / cleaned).read_bytes() == (run_dir / "covidx_pp" / cleaned).read_bytes()
    assert {name: (copy / "models" / name).stat().st_mtime_ns for name in models} == models  # not retrained
    again = json.loads((copy / "summary.json").read_text())
    varies = ("run_id", "seconds", "since_last_run")
    assert {k: v for k, v in again.items() if k not in varies} == {k: v for k, v in summary.items() if k not in varies}
    assert summary["since_last_run"] is None  # the first run into its folder
    since = again["since_last_run"]  # the same data: nothing changed since the original run
    assert since.pop("previous_finished_at") == json.loads((run_dir / "last_run" / "run.json").read_text())[
        "finished_at"]
    assert since == {"added": 0, "removed": 0, "changed": 0, "unreadable": 0, "new_flags": 0, "flags_gone": 0}
    assert not [path for path in records(copy).values() if str(run_dir) in path.read_text()]
