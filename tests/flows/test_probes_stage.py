"""The probes stage in the real flow: the shared tiny audit (conftest's `local_run`) copied and run again with
`probes` enabled, so that only the probes stage and the wrap-up run; real films, real CRAFT boxes, real
COVIDx++ copies, real probes."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from benchmarks.common import TINY
from datasets.synthetic import SPLIT_FILES, read_truth
from flows.config import ProbeSettings, load_config
from flows.probes_stage import write_probes
from flows.summary import PROBE_KEYS, probe_summary
from flows.tasks import Data, Split
from pipeline.clean_manifest import read_manifest
from pipeline.probes import CORRELATION_COLUMNS, LABEL_FROM_SOURCE_COLUMNS, LEAKAGE_COLUMNS, SOURCE_COLUMNS, VIEWS
from pipeline.text import read_detections
from reports.probes_section import TITLE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # uses the shared audit run (local_run)

PROBES = {"enabled": True, "epochs": 2, "n_resamples": 50, "image_size": 32}
TABLES = {"source.csv": SOURCE_COLUMNS, "leakage.csv": LEAKAGE_COLUMNS,
          "leakage_correlation.csv": CORRELATION_COLUMNS, "label_from_source.csv": LABEL_FROM_SOURCE_COLUMNS}


def probed(run_dir, enabled=True):
    from flows.audit import run_audit

    return run_audit(load_config(None, run_dir=run_dir, **TINY, probes={**PROBES, "enabled": enabled}))


@pytest.fixture(scope="module")
def probed_run(local_run, tmp_path_factory):
    """(run folder, summary) of the shared tiny run copied and rerun with the probes enabled."""
    run_dir, _ = local_run
    copy = tmp_path_factory.mktemp("probes") / "run"
    shutil.copytree(run_dir, copy)
    return copy, probed(copy)


def test_the_stage_writes_its_tables_from_the_runs_own_films(probed_run):
    run_dir, _ = probed_run
    for name, columns in TABLES.items():
        assert list(pd.read_csv(run_dir / "probes" / name).columns) == list(columns), name
    status = json.loads((run_dir / "probes" / "status.json").read_text())
    assert status["films"] == {"train": 36, "test": 12} and status["audit_split"] == "test"
    assert status["generator_lung_masks"] == 48  # synthetic: every film's lung fields from the generator
    truth = read_truth(run_dir / "data", "train")
    assert status["sources"] == sorted({item.source for item in truth})
    source = pd.read_csv(run_dir / "probes" / "source.csv")
    assert len(source) == len(VIEWS) * (1 + len(status["sources"])) and set(source.view) == set(VIEWS)
    assert set(source.stratum) == {"all", *status["sources"]}
    # cleaned: the manifest's cleaned films; never-texted: no detected box; patients with both kinds left out
    manifest = read_manifest(run_dir / "covidx_pp" / "manifest.csv")
    cleaned = sum(row.status == "cleaned" and bool(row.boxes) for row in manifest.values())
    never = sum(not boxes for split in ("train", "test")
                for boxes in read_detections(run_dir / "text" / "detections.csv", split=split).values())
    mixed = status["left_out"].get("leakage probe: patient with cleaned and never-texted films", 0)
    assert sum(status["cleaned"].values()) + sum(status["never_texted"].values()) == cleaned + never - mixed
    leakage = pd.read_csv(run_dir / "probes" / "leakage.csv")
    if "leakage" in status["skipped"]:
        assert leakage.empty
    else:
        assert list(leakage.variant) == ["whole", "patches"]
        assert (leakage.positives == status["cleaned"]["test"]).all()
    from_source = pd.read_csv(run_dir / "probes" / "label_from_source.csv")
    assert set(from_source.split) == {"train", "test", "test_decorrelated"}


def test_the_summary_gets_the_probes_keys_and_keeps_the_others(probed_run, local_run):
    run_dir, summary = probed_run
    _, plain = local_run
    assert all(plain[key] is None for key in PROBE_KEYS)  # the stage is off by default
    varies = ("run_id", "seconds", "since_last_run", *PROBE_KEYS)
    assert {k: v for k, v in summary.items() if k not in varies} == {k: v for k, v in plain.items() if k not in varies}
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    aucs = summary["source_probe_auc"]
    assert set(aucs) == {*VIEWS, "n"} and aucs["n"] == 12
    assert all(0 <= aucs[view] <= 1 for view in VIEWS)
    assert set(summary["label_from_source"]) == {"train", "test", "test_decorrelated"}
    leakage = pd.read_csv(run_dir / "probes" / "leakage.csv")  # each variant's AUC beside its n
    leaks = {variant: round(float(auc), 4) for variant, auc in zip(leakage.variant, leakage.auc, strict=True)}
    assert summary["leakage_auc"] == {**leaks, "n": dict(zip(leakage.variant, leakage.n, strict=True))}
    # 12 test films over four hospitals: no source has the 10 films a verdict needs
    assert summary["shortcut_removed"].startswith("Cannot say: fewer than 10 test films per source (")


def test_the_report_has_the_section_only_when_the_run_has_probes(probed_run, local_run):
    run_dir, _ = probed_run
    markdown = (run_dir / "summary.md").read_text()
    assert f"## 7. {TITLE}" in markdown and "Cannot say: fewer than 10 test films per source" in markdown
    assert "Label from source: accuracy" in markdown and TITLE in (run_dir / "report.html").read_text()
    assert TITLE not in (local_run[0] / "summary.md").read_text()


def test_a_rerun_reuses_the_probes_and_turning_them_off_removes_them(probed_run, tmp_path):
    run_dir, summary = probed_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    status = copy / "probes" / "status.json"
    written = status.stat().st_mtime_ns
    assert probed(copy)["source_probe_auc"] == summary["source_probe_auc"]
    assert status.stat().st_mtime_ns == written  # reused: the probes did not run again
    off = probed(copy, enabled=False)
    assert not (copy / "probes").exists() and all(off[key] is None for key in PROBE_KEYS)
    assert TITLE not in (copy / "summary.md").read_text()


def test_a_single_source_folder_gets_reasons_not_numbers_for_the_source_probes(probed_run, tmp_path):
    """The probed run's films with every split line's source set to one hospital (as in a single-source real
    folder): the source probes and label-from-source write headers and their reason, the leakage probe, which
    needs no source, is the same as before; summary.json's keys for the skipped probes are null."""
    run_dir, summary = probed_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    root = copy / "data"
    for name in ("train", "test", "test_decorrelated"):
        path = root / SPLIT_FILES[name]
        path.write_text("".join(" ".join([*line.split()[:3], "rsna"]) + "\n" for line in path.read_text().splitlines()))
    split = {name: Split(name, root / SPLIT_FILES[name], root / name) for name in SPLIT_FILES}
    data = Data(root, split["train"], {"test": split["test"], "test_decorrelated": split["test_decorrelated"]}, "test",
                True, "single-source")
    status = write_probes(data, copy, copy / "text" / "detections.csv", copy / "covidx_pp" / "manifest.csv",
                          ProbeSettings(**{key: value for key, value in PROBES.items() if key != "enabled"}))
    assert status["sources"] == ["rsna"] and set(status["skipped"]) == {"source", "label_from_source"}
    assert "1 source(s) ['rsna']" in status["skipped"]["source"]
    assert "needs at least two" in status["skipped"]["label_from_source"]
    for name in ("source.csv", "label_from_source.csv"):
        assert pd.read_csv(copy / "probes" / name).empty, name
    for name in ("leakage.csv", "leakage_correlation.csv"):
        assert (copy / "probes" / name).read_bytes() == (run_dir / "probes" / name).read_bytes(), name
    found = probe_summary(copy)
    assert found["source_probe_auc"] is found["label_from_source"] is found["shortcut_removed"] is None
    assert found["leakage_auc"] == summary["leakage_auc"]
