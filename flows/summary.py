"""What a finished audit run writes about itself: summary.json, timings.csv, rejected.csv, changes.json and the
Prefect artifacts (the headline, the metrics table, a link to the report)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from datasets.atomic import write_text
from datasets.rejects import REJECTED_COLUMNS
from flows.progress import StageTime
from flows.tasks import Data
from pipeline import changes as changes_stage
from pipeline import train as train_stage
from pipeline.checkpoint import read_meta
from reports.probes_section import shortcut_verdict

VERSIONED = ("cxr-audit", "torch", "torchvision", "easyocr", "prefect", "opencv-python-headless", "pydicom")


QUALITY_KEYS = ("flag_precision", "flag_recall", "share_flag_precision", "share_flag_recall", "confirmed_precision",
                "confirmed_recall", "counterfactual_precision", "counterfactual_recall", "share_roc_auc",
                "top5_share_roc_auc", "truth_share_roc_auc", "flag_reference", "flag_by", "flag_threshold")
PROBE_KEYS = ("source_probe_auc", "leakage_auc", "label_from_source", "shortcut_removed")


def write_timings(path: Path, stages: Sequence[StageTime], seconds: float) -> Path:
    """timings.csv: `stage, images, seconds` of every stage of this run (reused stages take about 0 s), then
    "other" (the time between stages) and "total", the run's time in summary.json; the report is not in it."""
    rows = [(item.name, item.total, round(item.seconds, 2)) for item in stages]
    rows += [("other", None, round(seconds - sum(item.seconds for item in stages), 2)), ("total", None,
                                                                                         round(seconds, 1))]
    table = pd.DataFrame(rows, columns=["stage", "images", "seconds"]).astype({"images": "Int64"})
    return write_text(path, table.to_csv(index=False, lineterminator="\n"))


def write_rejected(run_dir: Path) -> Path:
    """rejected.csv: every image a per-image stage skipped, gathered from the stages' own tables."""
    frames = [pd.read_csv(path, dtype=str, keep_default_na=False) for path in
              [*sorted(run_dir.glob("rejected/*.csv")), *sorted(run_dir.glob("explain/*/rejected.csv")),
               *sorted(run_dir.glob("audit/*_rejected.csv"))]]
    detections = pd.read_csv(run_dir / "text" / "detections.csv", dtype=str, keep_default_na=False)
    frames.append(detections[detections.status == "rejected"].assign(stage="detect-text")[list(REJECTED_COLUMNS)])
    cleaned = pd.read_csv(run_dir / "covidx_pp" / "rejected.csv", dtype=str, keep_default_na=False)
    frames.append(pd.DataFrame({"stage": "build-covidx-pp", "split": cleaned.split_files, "filename": cleaned.source,
                                "reason": cleaned.reason}))
    table = pd.concat([frame[list(REJECTED_COLUMNS)] for frame in frames], ignore_index=True)
    return write_text(run_dir / "rejected.csv", table.to_csv(index=False, lineterminator="\n"))


def write_changes(run_dir: Path, inventory: pd.DataFrame) -> dict | None:
    """changes.json: what changed since the last completed run into this folder (`pipeline.changes`), or None
    (and no changes.json) when there was none."""
    previous = changes_stage.read_snapshot(run_dir)
    if previous is None:
        (run_dir / "changes.json").unlink(missing_ok=True)
        return None
    audit = changes_stage.read_audit(run_dir / "audit" / "a.csv")
    since = _without_nan(changes_stage.since_last_run(previous, inventory, audit))
    write_text(run_dir / "changes.json", json.dumps(since, indent=1, allow_nan=False) + "\n")
    return since


def probe_summary(run_dir: Path) -> dict:
    """summary.json's PROBE_KEYS from probes/ (flows/probes_stage.py): the mean source-probe AUC per view with
    its n, the leakage AUC per variant with its n (the smaller of the cleaned and compared test pictures: an AUC
    of n = 3 is no finding), the source-alone accuracy per split (fitted on train) and the verdict
    (reports.probes_section.shortcut_verdict); a key is None where its probe was skipped."""
    tables = {name: pd.read_csv(run_dir / "probes" / f"{name}.csv")
              for name in ("source", "leakage", "label_from_source")}
    overall = tables["source"][tables["source"].stratum == "all"]
    accuracy = tables["label_from_source"].query("fitted_on == 'train' and metric == 'accuracy'")
    leakage = tables["leakage"]
    return {"source_probe_auc": {**{row.view: round(float(row.auc), 4) for row in overall.itertuples()},
                                 "n": int(overall.n.max())} if len(overall) else None,
            "leakage_auc": {**{row.variant: round(float(row.auc), 4) for row in leakage.itertuples()},
                            "n": {row.variant: int(row.n) for row in leakage.itertuples()}} if len(leakage) else None,
            "label_from_source": {row.split: round(float(row.value), 4) for row in accuracy.itertuples()} or None,
            "shortcut_removed": shortcut_verdict(tables["source"], tables["leakage"])}


def write_summary(run_dir: Path, data: Data, counts: dict[str, int], splits: Sequence[str], seconds: float, *,
                  task_runner: str, since_last_run: dict | None = None, probes: bool = False) -> dict:
    """summary.json: the headline numbers of docs/run-directory.md, read from the run's tables. `counts`: the
    images each split file listed when the run read them; `task_runner`: where the per-image work ran
    (`describe_task_runner`); `since_last_run`: changes.json's content (its counts go into the summary);
    `probes`: the probes stage ran (its PROBE_KEYS, `probe_summary`; else each is None)."""
    covid = train_stage.positive_label(read_meta(run_dir / "models" / "a.safetensors").labels)
    summary: dict = {"run_id": run_dir.name, "seconds": round(seconds, 1), "task_runner": task_runner,
                     "synthetic": data.synthetic,
                     "versions": {package: version(package) for package in VERSIONED},
                     "dataset": counts}
    metrics = pd.read_csv(run_dir / "compare" / "metrics.csv")
    for m in ("a", "b"):
        numbers: dict[str, dict[str, float]] = {"covid_recall": {}, "accuracy": {}, "macro_f1": {}}
        for split in splits:
            table = pd.read_csv(run_dir / "predictions" / f"{m}_{split}.csv")
            positives = table[table.label == covid]
            numbers["covid_recall"][split] = round(float((positives.predicted == covid).mean()), 4)
            numbers["accuracy"][split] = round(float(table.correct.mean()), 4)
        overall = metrics[(metrics.stratum_kind == "all") & (metrics.model == m) & (metrics.metric == "macro_f1")]
        numbers["macro_f1"] = {row.split: round(float(row.value), 4) for row in overall.itertuples()}
        summary[m] = numbers
    mcnemar = pd.read_csv(run_dir / "compare" / "mcnemar.csv")
    overall = mcnemar[mcnemar.stratum_kind == "all"]
    summary["mcnemar_p"] = {row.split: float(row.p_value) for row in overall.itertuples()}
    by_class = pd.read_csv(run_dir / "compare" / "class_mcnemar.csv")
    covid_rows = by_class[(by_class.stratum_kind == "all") & (by_class.label == covid)]
    summary["covid_mcnemar_p"] = {row.split: float(row.p_value) for row in covid_rows.itertuples()}
    difference = metrics[(metrics.stratum_kind == "all") & (metrics.model == "b-a")
                         & (metrics.metric == f"recall_{covid}")]
    summary["covid_recall_difference"] = {row.split: {"value": round(float(row.value), 4), "ci_low": round(
        float(row.ci_low), 4), "ci_high": round(float(row.ci_high), 4)} for row in difference.itertuples()}
    quality = json.loads((run_dir / "audit" / "a_quality.json").read_text())
    summary.update({key: quality.get(key) for key in QUALITY_KEYS})
    for m in ("a", "b"):
        summary[f"text_share_{m}"] = round(float(pd.read_csv(run_dir / "audit" / f"{m}.csv").text_share.mean()), 4)
    manifest = pd.read_csv(run_dir / "covidx_pp" / "manifest.csv")
    summary["covidx_pp"] = {status: int((manifest.status == status).sum()) for status in
                            ("cleaned", "unchanged", "rejected")}
    summary["since_last_run"] = None if since_last_run is None else {
        "previous_finished_at": since_last_run["previous_finished_at"],
        **{kind: since_last_run["images"][kind] for kind in ("added", "removed", "changed", "unreadable")},
        "new_flags": since_last_run["flags"]["new"], "flags_gone": since_last_run["flags"]["gone"]}
    summary.update(probe_summary(run_dir) if probes else dict.fromkeys(PROBE_KEYS))
    summary = _without_nan(summary)
    write_text(run_dir / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary


def percent(value: float | None) -> str:
    """A summary.json fraction as a percentage; "n/a" for null (e.g. a class absent from the split)."""
    return "n/a" if value is None else f"{value:.1%}"


def _without_nan(value: object) -> object:
    """`value` with every NaN or infinite float (a metric of a class absent from a split) replaced by None,
    which JSON writes as null: NaN is not JSON, and most readers refuse it."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def publish_artifacts(run_dir: Path, summary: dict) -> None:
    """Prefect artifacts: the headline numbers (markdown), the metrics table and a link to the report."""
    a, b = summary["a"]["covid_recall"], summary["b"]["covid_recall"]
    lines = ["# Dataset audit: headline", "", "| | A | B |", "|---|---|---|"]
    lines += [f"| COVID-19 recall, {split} | {percent(a[split])} | {percent(b[split])} |" for split in a]
    lines += ["", f"Text share of iGOS++ saliency: A {percent(summary['text_share_a'])}, "
              f"B {percent(summary['text_share_b'])}."]
    create_markdown_artifact("\n".join(lines), key="audit-headline", description="COVIDx -> COVIDx++ headline")
    metrics = pd.read_csv(run_dir / "compare" / "metrics.csv")
    rows = metrics[metrics.stratum_kind == "all"].round(4).to_dict(orient="records")
    create_table_artifact(rows, key="audit-metrics", description="A vs B, all test images, with 95% intervals")
    create_link_artifact((run_dir / "report.html").resolve().as_uri(), key="audit-report", link_text="report.html")
