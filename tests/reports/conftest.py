"""A tiny run directory written by hand, following docs/run-directory.md, with known numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimage

LABELS = ("normal", "pneumonia", "COVID-19")
SOURCES = ("rsna", "ricord")
SPLITS = ("test", "test_decorrelated")
PLANTED_PATIENT = "PLANTED-PATIENT-7f3a"  # patient_id column values: must never reach the report
PLANTED_HEADER = "DOE^JANE-HEADER"  # a DICOM-header-like value in a file the report never reads
N = 12  # images per split

SUMMARY = {
    "run_id": "tiny-run", "seconds": 321.0,
    "dataset": {"train": {"normal": 40, "pneumonia": 30, "COVID-19": 20}, "test": {"normal": 4, "pneumonia": 4,
                                                                                   "COVID-19": 4}},
    "a": {"covid_recall": {"test": 1.0, "test_decorrelated": 0.25}, "accuracy": {"test": 0.9}, "macro_f1": {}},
    "b": {"covid_recall": {"test": 1.0, "test_decorrelated": 0.75}, "accuracy": {"test": 0.9}, "macro_f1": {}},
    "mcnemar_p": {"test": 1.0, "test_decorrelated": 0.004},
    "flag_precision": 0.875, "flag_recall": 0.7, "share_roc_auc": 0.93,
    "text_share_a": 0.41, "text_share_b": 0.06,
    "covidx_pp": {"cleaned": 2, "unchanged": 1, "rejected": 1},
}
# (split, metric): A value, B value; McNemar p per split (decorrelated: B better, significant).
METRICS = {("test", "accuracy"): (0.917, 0.917), ("test", "recall_COVID-19"): (1.0, 1.0),
           ("test_decorrelated", "accuracy"): (0.583, 0.75), ("test_decorrelated", "recall_COVID-19"): (0.25, 0.75)}
MCNEMAR_P = {"test": 1.0, "test_decorrelated": 0.0039}


def _csv(root: Path, relative: str, frame: pd.DataFrame) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _predictions(split: str, model: str) -> pd.DataFrame:
    rng = np.random.default_rng([SPLITS.index(split), ord(model)])
    labels = np.array(LABELS)[np.arange(N) % 3]
    predicted = np.where(rng.random(N) < 0.75, labels, "normal")
    frame = pd.DataFrame({"filename": [f"{split}_{i:03d}.png" for i in range(N)],
                          "patient_id": [f"{PLANTED_PATIENT}-{i}" for i in range(N)],
                          "source": np.array(SOURCES)[np.arange(N) % 2], "label": labels, "predicted": predicted})
    frame["correct"] = frame["label"] == frame["predicted"]
    for label in LABELS:
        frame[f"prob_{label}"] = np.where(frame["predicted"] == label, 0.8, 0.1)
    return frame


def _audit(model: str, share: float) -> pd.DataFrame:
    frame = _predictions("test", model).drop(columns=["correct", *[f"prob_{label}" for label in LABELS]])
    i = np.arange(N)
    frame["target_label"] = frame["predicted"]
    frame["text_share"] = share + 0.02 * (i % 5)
    frame["text_top5_share"] = frame["text_share"]
    frame["text_area"] = 0.04
    frame["n_text_boxes"] = 1
    frame["flagged"] = frame["text_share"] > 0.3
    frame["counterfactual"] = frame["flagged"]
    frame["cf_target_probability"] = np.where(frame["counterfactual"], 0.5, np.nan)
    frame["cf_probability_drop"] = np.where(frame["counterfactual"], 0.3, np.nan)
    frame["cf_predicted"] = np.where(frame["counterfactual"], "normal", None)
    frame["cf_prediction_changed"] = np.where(frame["counterfactual"], i % 2 == 0, None)
    frame["truth_text_share"] = frame["text_share"]
    frame["lesion_share"] = 0.2
    return frame


def _by(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.groupby(column).agg(
        images=("filename", "size"), flagged=("flagged", "sum"), flagged_rate=("flagged", "mean"),
        mean_text_share=("text_share", "mean"), mean_text_area=("text_area", "mean"),
        counterfactuals=("counterfactual", "sum"), cf_changed_rate=("flagged", "mean"),
        mean_cf_probability_drop=("cf_probability_drop", "mean"), mean_lesion_share=("lesion_share", "mean"),
    ).rename_axis("group").reset_index()


def _compare(root: Path) -> None:
    rows = []
    for (split, metric), (a, b) in METRICS.items():
        for model, value in (("a", a), ("b", b), ("b-a", b - a)):
            rows.append((split, "all", "all", model, metric, value, value - 0.1, value + 0.1))
            for source in SOURCES:
                rows.append((split, "source", source, model, metric, value, np.nan, np.nan))
    _csv(root, "compare/metrics.csv", pd.DataFrame(rows, columns=["split", "stratum_kind", "stratum", "model",
                                                                 "metric", "value", "ci_low", "ci_high"]))
    _csv(root, "compare/mcnemar.csv", pd.DataFrame(
        [(split, "all", "all", N, 6, 1 if p > 0.5 else 0, 1 if p > 0.5 else 9, 4, p) for split, p in MCNEMAR_P.items()],
        columns=["split", "stratum_kind", "stratum", "n", "both_correct", "a_only", "b_only", "both_wrong",
                 "p_value"]))
    confusion = [(split, m, t, p, 1) for split in SPLITS for m in "ab" for t in LABELS for p in LABELS]
    _csv(root, "compare/confusion.csv", pd.DataFrame(confusion, columns=["split", "model", "true", "predicted",
                                                                         "count"]))


BOX = {"x0": 2, "y0": 2, "x1": 20, "y1": 8, "score": 0.9}  # the burned-in "text" of the cleaned films
REFUSED = {"x0": 24, "y0": 20, "x1": 34, "y1": 26, "score": 0.6, "reason": "not text-like: stroke contrast 0.010"}


def _images(root: Path) -> None:
    """Two cleaned PNG images with their sources under data/, one unchanged, one rejected DICOM."""
    rows = []
    for i, fraction in enumerate((0.05, 0.12)):
        name = f"test/clean_{i}.png"
        before = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (30, 1))
        after = before.copy()
        before[2:8, 2:20] = 1.0
        for base, pixels in (("data", before), ("covidx_pp", after)):
            (root / base / name).parent.mkdir(parents=True, exist_ok=True)
            mpimage.imsave(root / base / name, pixels, cmap="gray", vmin=0, vmax=1)
        refused = json.dumps([REFUSED] if i == 1 else [])
        rows.append((name, name, "test_COVIDx9A.txt", "cleaned", "", json.dumps([BOX]), "[]", refused, 100, fraction))
    plain = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (30, 1))
    for base in ("data", "covidx_pp"):
        mpimage.imsave(root / base / "test" / "plain.png", plain, cmap="gray", vmin=0, vmax=1)
    rows.append(("test/plain.png", "test/plain.png", "test_COVIDx9A.txt", "unchanged", "", "[]", "[]", "[]", 0, 0.0))
    rows.append(("test/broken.dcm", "", "test_COVIDx9A.txt", "rejected", "InvalidDicomError: truncated", "[]", "[]",
                 "[]", 0, 0.0))
    manifest = pd.DataFrame(rows, columns=["source", "output", "split_files", "status", "reason", "boxes",
                                           "kept_boxes", "refused_boxes", "masked_pixels", "masked_fraction"])
    manifest[["source_sha256", "output_sha256", "config_digest"]] = "0" * 8
    _csv(root, "covidx_pp/manifest.csv", manifest)
    _csv(root, "covidx_pp/rejected.csv", manifest[manifest["status"] == "rejected"])
    # A DICOM-like header dump the report must never read (headers are not part of the run-directory contract).
    (root / "data" / "test" / "broken.dcm").write_text(f"PatientName={PLANTED_HEADER}\nPatientID={PLANTED_HEADER}")


def write_tiny_run(root: Path) -> Path:
    """Every file of the contract that the report reads, small and with known values."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps(SUMMARY))
    (root / "config.yaml").write_text("run_id: tiny-run\ndata:\n  synthetic: true\n  seed: 7\ntrain:\n  seed: 11\n"
                                      "  epochs: 2\n")
    for model in "ab":
        meta = {"architecture": "small_cnn", "labels": list(LABELS), "image_size": 64, "in_channels": 1, "mean": 0.5,
                "std": 0.225, "seed": 11, "train_sha256": f"{model}" * 8, "validation": {"accuracy": 0.8}, "epoch": 2}
        (root / "models").mkdir(exist_ok=True)
        (root / "models" / f"{model}.json").write_text(json.dumps(meta))
        _csv(root, f"models/{model}_history.csv", pd.DataFrame({
            "epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "val_accuracy": [0.5, 0.8],
            "val_macro_f1": [0.4, 0.8], "val_covid_recall": [0.5, 0.9], "learning_rate": [1e-3, 1e-3],
            "seconds": [10.0, 12.5]}))
        for split in SPLITS:
            _csv(root, f"predictions/{model}_{split}.csv", _predictions(split, model))
        audit = _audit(model, 0.35 if model == "a" else 0.03)
        _csv(root, f"audit/{model}.csv", audit)
        _csv(root, f"audit/{model}_by_class.csv", _by(audit, "label"))
        _csv(root, f"audit/{model}_by_source.csv", _by(audit, "source"))
    rng = np.random.default_rng(0)
    k, side = 2, 24
    np.savez(root / "audit" / "a_gallery.npz", filenames=np.array(["test_003.png", "test_007.png"]),
             labels=np.array(["COVID-19", "pneumonia"]), predicted=np.array(["COVID-19", "normal"]),
             text_share=np.array([0.61, 0.55]), images=rng.random((k, side, side), dtype=np.float32),
             saliency=rng.random((k, side, side), dtype=np.float32),
             inpainted=rng.random((k, side, side), dtype=np.float32), boxes=np.array(json.dumps([[[1, 1, 8, 5]], []])))
    _csv(root, "text/detections.csv", pd.DataFrame({"split": ["test"], "filename": ["test_000.png"], "status": ["ok"],
                                                    "reason": [""], "boxes": ["[]"], "seconds": [0.25]}))
    _compare(root)
    _images(root)
    return root


@pytest.fixture
def tiny_run(tmp_path: Path) -> Path:
    return write_tiny_run(tmp_path / "run")
