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

import pytest

from flows.results import ResultRecordError, check_result_record


class _Touch:
    """Unpickling this creates `path`: the proof that a pickle was (or was not) executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def records(run_dir: Path) -> dict[str, Path]:
    return {path.name.rsplit("-", 1)[0]: path for path in (run_dir / ".prefect" / "results").iterdir()}


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


def test_a_rerun_over_a_tampered_record_refuses_it_by_name_executes_nothing_and_redoes_the_task(
        local_run, tmp_path):
    """The rerun is a new process, as a scheduled rerun is (within one process Prefect keeps the records it
    wrote in memory and never reads them back)."""
    run_dir, _ = local_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "executed"
    tampered = records(copy)["compare"]  # a record the rerun looks up (the data record's key changes once)
    tampered.write_bytes(pickle.dumps(_Touch(marker)))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    rerun = subprocess.run([str(Path(sys.executable).parent / "cxr-audit"), "demo", "--config",
                            str(copy / "config.yaml"), "--out", str(copy)], env=env, capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not marker.exists()
    assert f"{tampered}: not a JSON result record; this result was not written by cxr-audit" in rerun.stderr
    check_result_record(tampered, tampered.read_bytes())  # the task ran again and wrote a sound record
