"""The audit on synthetic data, against ground truth: does classifier A learn the text shortcut, and do the
flags find the images whose prediction rests on the text?

Runs the whole audit flow (configs/audit_synthetic.yaml unless --config) from scratch into a fresh run
folder, or reads a finished run (--from-run runs/demo), and writes benchmarks/results/audit_synthetic.md
and .json. Two ground truths of "the prediction rests on the text":

    copy truth       A's prediction on the image differs from that on its known text-free copy (the
                     generator's film before any text was drawn: the strict truth)
    inpainted truth  A's prediction changes when the *true* text boxes alone are inpainted (the issue's
                     wording; the inpainting itself can move a prediction, so the two differ a little)

    covid_recall_test, covid_recall_test_decorrelated   classifier A (the shortcut: the second is lower)
    flag_precision, flag_recall                         the run's flags (audit.flag_by) against the copy truth
    flag_precision_inpainted_truth, _recall_...         the same against the inpainted truth
    share_flag_precision, share_flag_recall             flags text_share ≥ the threshold, against the copy truth
    confirmed_precision, confirmed_recall               high share and the counterfactual changed
    counterfactual_precision, counterfactual_recall     the counterfactual alone: the prediction changed when
                                                        the *detected* text was inpainted
    truth_boxes_counterfactual_precision, _recall       the same with the ground-truth boxes inpainted instead
                                                        (a perfect detector: the counterfactual's own limit)
    by_upscale (--upscales 2 3)                         the same with CRAFT run again at other canvas sizes
    share_roc_auc                                       ROC AUC of text_share as a score for that truth
    top5_share_roc_auc, truth_share_roc_auc             the same for the top-5 % share, and for the share on
                                                        the ground-truth boxes (the saliency with a perfect
                                                        detector: separates the map's limit from the detector's)
    chosen_threshold_f1, chosen_threshold_youden        thresholds pipeline.audit.choose_threshold picks
    seconds                                             the flow's wall time

    python -m benchmarks.audit_synthetic                       # ~35 min on 2 CPU cores (CRAFT at 1024 px)
    python -m benchmarks.audit_synthetic --from-run runs/demo  # seconds: the numbers of a finished run
    python -m benchmarks.audit_synthetic --from-run runs/demo --upscales 2 3   # + CRAFT canvas sweep (~5 min)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import RESULTS, ROOT, command_line, cpu_arch, program, write_results
from datasets.synthetic import read_truth, split_records
from flows.config import load_config
from pipeline.audit import AuditError, audit_split, choose_threshold, flag_quality
from pipeline.explain import load_saliency
from pipeline.text import TextBox, detect_split, read_detections


def measure(run_dir: Path, upscales: Sequence[float] = ()) -> dict:
    """The benchmark's numbers from a finished synthetic run folder; with `upscales`, also the counterfactual
    with CRAFT's boxes at each of those canvas upscales (detection run again on the audited split)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    audit = pd.read_csv(run_dir / "audit" / "a.csv", dtype={"filename": str})
    truth = pd.read_csv(run_dir / "audit" / "a_flag_truth.csv", dtype={"filename": str})
    table = audit.merge(truth, on="filename")
    shares, changed = table.text_share.to_numpy(), table.prediction_changed.to_numpy(bool)
    numbers = {
        "covid_recall_test": summary["a"]["covid_recall"]["test"],
        "covid_recall_test_decorrelated": summary["a"]["covid_recall"]["test_decorrelated"],
        "flag_by": summary.get("flag_by", "share"),
        "flag_precision": summary["flag_precision"], "flag_recall": summary["flag_recall"],
        "share_flag_precision": summary.get("share_flag_precision"),
        "share_flag_recall": summary.get("share_flag_recall"),
        "confirmed_precision": summary["confirmed_precision"], "confirmed_recall": summary["confirmed_recall"],
        "counterfactual_precision": summary.get("counterfactual_precision"),
        "counterfactual_recall": summary.get("counterfactual_recall"),
        "share_roc_auc": summary["share_roc_auc"], "top5_share_roc_auc": summary.get("top5_share_roc_auc"),
        "truth_share_roc_auc": summary.get("truth_share_roc_auc"), "flag_threshold": summary["flag_threshold"],
        "films_without_detected_text": int((table.n_text_boxes == 0).sum()),
        "changed_without_detected_text": int(((table.n_text_boxes == 0) & changed).sum()),
        "images_audited": len(table), "prediction_changed_without_text": int(changed.sum()),
        "flagged": int(table.flagged.sum()), "seconds": summary["seconds"],
        "text_share_a": summary["text_share_a"], "text_share_b": summary["text_share_b"],
        "b_covid_recall_test_decorrelated": summary["b"]["covid_recall"]["test_decorrelated"],
        "covid_mcnemar_p_test_decorrelated": summary["covid_mcnemar_p"]["test_decorrelated"],
    }
    for criterion in ("f1", "youden"):
        try:
            numbers[f"chosen_threshold_{criterion}"] = round(choose_threshold(shares, changed, criterion=criterion), 4)
        except AuditError as error:
            numbers[f"chosen_threshold_{criterion}"] = None
            numbers["threshold_note"] = str(error)
    copy_truth = dict(zip(table.filename, changed, strict=True))
    counterfactual = Counterfactual(run_dir)
    true_boxes = counterfactual.with_true_boxes()
    inpainted_truth = dict(zip(true_boxes.filename, true_boxes.cf_prediction_changed.eq(True), strict=True))
    against_inpainted = flag_quality(table, inpainted_truth)
    numbers |= {"flag_precision_inpainted_truth": _rounded(against_inpainted["flag_precision"]),
                "flag_recall_inpainted_truth": _rounded(against_inpainted["flag_recall"]),
                "inpainted_truth_positives": against_inpainted["positives"],
                "truths_disagree": int(sum(copy_truth[name] != inpainted_truth[name]
                                           for name in copy_truth.keys() & inpainted_truth.keys()))}
    numbers.update({f"truth_boxes_counterfactual_{key}": value
                    for key, value in counterfactual_quality(true_boxes, copy_truth).items()})
    numbers["by_threshold"] = [_at(shares, changed, t) for t in (0.05, 0.1, 0.15, 0.2, 0.3)]
    numbers["by_upscale"] = []
    for upscale in upscales:
        audited, seconds = counterfactual.with_craft(upscale)
        inpainted = {f"{key}_inpainted_truth": value for key, value in
                     counterfactual_quality(audited, inpainted_truth).items() if key in ("precision", "recall")}
        numbers["by_upscale"].append({"upscale": upscale, "detect_seconds": round(seconds, 1)}
                                     | counterfactual_quality(audited, copy_truth) | inpainted)
    return numbers


class Counterfactual:
    """A's maps audited again with other text boxes than the run's (the run's audit settings, every film with
    boxes given a counterfactual): audit tables (pipeline.audit.COLUMNS) to score with counterfactual_quality."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.config = load_config(run_dir / "config.yaml", run_dir=run_dir)
        self.split = self.config.data.audit_split
        self.records = split_records(run_dir / "data", self.split)
        self.saliency = load_saliency(run_dir / "explain" / "a")

    def with_true_boxes(self) -> pd.DataFrame:
        """With the ground-truth boxes inpainted (a perfect detector: the counterfactual's own limit)."""
        boxes = {item.filename: [TextBox(b.x0, b.y0, b.x1, b.y1, 1.0) for b in item.text_boxes]
                 for item in read_truth(self.run_dir / "data", self.split)}
        return self.audited(boxes)

    def with_craft(self, upscale: float) -> tuple[pd.DataFrame, float]:
        """With CRAFT's boxes, the run's text settings but the canvas `upscale` × the film's long side; and the
        detection's seconds."""
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            detections = Path(scratch) / "detections.csv"
            detect_split(self.records, detections, config=replace(self.config.text, upscale=upscale), split=self.split)
            seconds = time.perf_counter() - started
            return self.audited(read_detections(detections, split=self.split)), seconds

    def audited(self, boxes: dict[str, list[TextBox]]) -> pd.DataFrame:
        """The audit table with these boxes, a counterfactual on every film that has one."""
        with tempfile.TemporaryDirectory() as scratch:
            return audit_split(self.run_dir / "models" / "a.safetensors", self.records, self.saliency, boxes,
                               scratch, replace(self.config.audit, cf_unflagged_fraction=1.0), split=self.split).table


def counterfactual_quality(table: pd.DataFrame, truth: dict[str, bool]) -> dict:
    """Precision and recall of "the prediction changed when the table's boxes were inpainted" against `truth`
    (filename → changed); films: those with a counterfactual; false changes and misses counted."""
    changed = table.cf_prediction_changed.eq(True)
    quality = flag_quality(table.assign(flagged=changed), truth)
    positive = table.filename.map(truth).astype(bool)
    return {"precision": _rounded(quality["flag_precision"]), "recall": _rounded(quality["flag_recall"]),
            "films": int(table.counterfactual.sum()), "false_changes": int((changed & ~positive).sum()),
            "missed": int((~changed & positive).sum())}


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)  # JSON has no NaN


def _at(shares: np.ndarray, changed: np.ndarray, threshold: float) -> dict:
    flagged = shares >= threshold
    hits = int((flagged & changed).sum())
    return {"threshold": threshold, "flagged": int(flagged.sum()),
            "precision": round(hits / flagged.sum(), 4) if flagged.any() else None,
            "recall": round(hits / changed.sum(), 4) if changed.any() else None}


def markdown(numbers: dict, command: str, run_dir: Path) -> str:
    lines = [
        "# Audit on synthetic data against ground truth",
        "",
        f"`{command}` — {datetime.date.today()}, {cpu_arch()}, run folder `{run_dir}`.",
        "",
        "Ground truth of a flag (copy truth): classifier A's prediction on the image differs from its "
        "prediction on the known text-free copy of the same film. Inpainted truth (the issue's wording): A's "
        "prediction changes when the true text boxes alone are inpainted.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {round(value, 4) if isinstance(value, float) else value} |"
              for key, value in numbers.items() if key not in ("by_threshold", "by_upscale")]
    lines += ["", "Flags at other thresholds (same maps):", "", "| threshold | flagged | precision | recall |",
              "|---|---|---|---|"]
    lines += [f"| {row['threshold']} | {row['flagged']} | {row['precision']} | {row['recall']} |"
              for row in numbers["by_threshold"]]
    if numbers["by_upscale"]:
        lines += ["", "The counterfactual with CRAFT run again at other canvas upscales (the run's other text "
                  "settings; films: those with a detected box; false changes: the inpainted film's prediction "
                  "changes but the text-free copy's does not):", "",
                  "| upscale | detect s | films with boxes | precision | recall | false changes | missed | "
                  "precision (inpainted truth) | recall (inpainted truth) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {row['upscale']} | {row['detect_seconds']} | {row['films']} | {row['precision']} | "
                  f"{row['recall']} | {row['false_changes']} | {row['missed']} | {row['precision_inpainted_truth']} | "
                  f"{row['recall_inpainted_truth']} |" for row in numbers["by_upscale"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "audit_synthetic.yaml")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "benchmark-audit-synthetic")
    parser.add_argument("--from-run", type=Path, help="a finished synthetic run folder to read instead of running")
    parser.add_argument("--upscales", type=float, nargs="*", default=[],
                        help="also run CRAFT on the audited split at these canvas upscales (e.g. 2 3; ~1-3 min each "
                             "on the demo) and measure the counterfactual with those boxes")
    args = parser.parse_args(argv)
    run_dir = args.from_run
    if run_dir is None:
        from flows.audit import run_audit
        from flows.settings import use_offline_prefect

        use_offline_prefect()
        run_dir = args.run_dir
        run_audit(load_config(args.config, run_dir=run_dir))
    numbers = measure(run_dir, args.upscales)
    write_results(RESULTS / "audit_synthetic.md", numbers, markdown(numbers, command_line(__file__, argv), run_dir))


if __name__ == "__main__":
    main()
