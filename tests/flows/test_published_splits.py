"""The real flow on a COVIDx folder whose split files carry the faults of the published ones.

- v1's train file repeats lines verbatim; v4's lists one image under two patient ids;
- v6/v7B put one patient in both train and test (accepted on purpose with `allow_patient_overlap`);
- two test split files share an image folder (`test_A.txt`, `test_B.txt`: both images in `test/`);
- one test split has no COVID-19 image, so its COVID-19 metrics are undefined (null in summary.json).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.covidx import read_split, write_split
from datasets.errors import PatientLeakError, SplitFileError
from datasets.synthetic import SPLIT_FILES, generate
from flows.config import load_config
from tests.flows.conftest import TINY

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def published_like(root: Path) -> dict[str, object]:
    """A synthetic COVIDx folder with the published files' faults; returns what was planted."""
    generate(root, n_train=TINY["data.synthetic"]["n_train"], n_test=TINY["data.synthetic"]["n_test"],
             image_size=TINY["data.synthetic"]["image_size"], seed=TINY["data.synthetic"]["seed"])
    train_file = root / SPLIT_FILES["train"]
    lines = train_file.read_text().splitlines()
    first = lines[0].split()
    conflict = f"someone-else {first[-3]} {first[-2]} {first[-1]}"  # the first image under another patient id
    train_file.write_text("\n".join([*lines, *lines[1:4], conflict]) + "\n")
    test = read_split(root / SPLIT_FILES["test"])
    shared_patient = read_split(train_file)[5].patient_id
    overlapping = test[0].filename
    write_split([record if record.filename != overlapping else
                 record.__class__(shared_patient, record.filename, record.label, record.source) for record in test],
                root / "test_A.txt")
    write_split([record for record in test if record.label != "COVID-19"], root / "test_B.txt")
    return {"repeated": 3, "conflict": first[-3], "overlap": overlapping}


def config_for(root: Path, run_dir: Path, **data: object):
    settings = {key: value for key, value in TINY.items() if key != "data.synthetic"}
    return load_config(None, run_dir=run_dir, **settings, **{
        "data.root": root, "data.train_split": SPLIT_FILES["train"], "data.audit_split": "test_A",
        "data.test_splits": {"test_A": "test_A.txt", "test_B": "test_B.txt"},
        **{f"data.{key}": value for key, value in data.items()}})


def test_published_split_faults_are_read_recorded_and_reported(prefect_server, tmp_path):
    from flows.audit import run_audit

    root = tmp_path / "covidx"
    planted = published_like(root)
    with pytest.raises(PatientLeakError, match="1 patient"):
        run_audit(config_for(root, tmp_path / "refused"))
    with pytest.raises(SplitFileError, match="line"):
        run_audit(config_for(root, tmp_path / "strict", allow_patient_overlap=True, duplicates="error"))
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # bad input fails at once: never retried like an I/O error
        failed = [run for run in client.read_task_runs() if run.name.startswith("prepare-data")
                  and run.state is not None and run.state.is_failed()]
    assert len(failed) >= 2 and all(run.run_count == 1 for run in failed)

    run_dir = tmp_path / "run"
    summary = run_audit(config_for(root, run_dir, allow_patient_overlap=True))
    quality = json.loads((run_dir / "data_quality.json").read_text())
    assert quality["splits"]["train"]["repeated_lines"] == planted["repeated"]
    assert [c["filename"] for c in quality["splits"]["train"]["conflicts"]] == [planted["conflict"]]
    assert quality["patient_overlap"] == {"test_A": {"patients": 1, "filenames": [planted["overlap"]]}}

    # Both test splits were predicted and compared under their own names.
    assert {"test_A", "test_B"} <= set(summary["a"]["accuracy"])
    # No COVID-19 image in test_B: its recall is undefined, written as null (strict JSON, no NaN).
    text = (run_dir / "summary.json").read_text()
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    assert strict["a"]["covid_recall"]["test_B"] is None
    report = (run_dir / "report.html").read_text()
    assert "Data quality" in report and planted["conflict"] in report

    # The dataset changes between scheduled runs: one training line removed, one test image edited. The same
    # command sees it and redoes what depends on it (A retrained, the edited image's COVIDx++ copy rebuilt).
    checkpoint = (run_dir / "models" / "a.safetensors").read_bytes()
    train_file = root / SPLIT_FILES["train"]
    kept = train_file.read_text().splitlines()
    del kept[10]  # a line listed once: neither repeated nor in conflict
    train_file.write_text("\n".join(kept) + "\n")
    edited = root / "test" / read_split(root / "test_A.txt")[1].filename
    pixels = cv2.imread(str(edited), cv2.IMREAD_UNCHANGED)
    pixels[44:52, 44:52] = 255 - pixels[44:52, 44:52]  # the film's centre: lungs, never burned-in text
    cv2.imwrite(str(edited), pixels)
    rerun = run_audit(config_for(root, run_dir, allow_patient_overlap=True))
    assert rerun["dataset"]["train"] == summary["dataset"]["train"] - 1
    assert (run_dir / "models" / "a.safetensors").read_bytes() != checkpoint
    copy = run_dir / "covidx_pp" / "test" / edited.name
    assert np.array_equal(cv2.imread(str(copy), cv2.IMREAD_UNCHANGED)[44:52, 44:52], pixels[44:52, 44:52])


def test_cli_usage_errors_exit_2_without_a_traceback(prefect_server, tmp_path):
    root = tmp_path / "covidx"
    generate(root, n_train=6, n_test=3, image_size=64, seed=0)
    common = [str(BIN / "cxr-audit"), "run", "--data", str(root), "--train-split", SPLIT_FILES["train"]]
    clash = subprocess.run([*common, "--test-split", "a/test.txt", "--test-split", "b/test.txt", "--out",
                            str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert clash.returncode == 2 and "both be the split 'test'" in clash.stderr
    split = root / SPLIT_FILES["test"]
    split.write_text(split.read_text() + "only-two tokens\n")
    bad = subprocess.run([*common, "--test-split", SPLIT_FILES["test"], "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "malformed line 'only-two tokens'" in bad.stderr and "Traceback" not in bad.stderr + bad.stdout
    not_a_run = subprocess.run([str(BIN / "cxr-audit"), "report", str(root)], capture_output=True, text=True,
                               timeout=120)
    assert not_a_run.returncode == 2 and "not a run folder" in not_a_run.stderr
    assert not (root / "report.html").exists()
