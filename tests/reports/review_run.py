"""A small run folder written by hand with only the files a review reads (docs/run-directory.md), in seconds.

Six films of the audited split `test` (synthetic layout: the dataset is the run's data/): each an 8-bit PNG with a
bright "text" plate in its top-left corner, its COVIDx++ copy without it, A's audit row, an iGOS++ map and the
detected box. Films 0-2 are flagged (in review order: film_2, film_1, film_0, then film_5 ... film_3 by text share).
Also: decisions rows (`decision`), a decisions file (`write`) and a film edited after its review (`change`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from datasets.atomic import file_sha256
from reports import review
from reports.review import COLUMNS, DECISIONS

PATIENT = "PLANTED-PATIENT-4c1d"  # patient_id values: the review page must never show them
N_FILMS = 6
BOX = {"x0": 4, "y0": 4, "x1": 28, "y1": 12, "score": 0.9}
SHA = "ab" * 32  # a well-formed image_sha256 of no film
WHEN = "2026-12-05T10:00:00+00:00"


def film_pixels(i: int, text: bool = True) -> np.ndarray:
    pixels = np.tile(np.linspace(30, 200, 80), (64, 1)).astype(np.uint8)
    pixels[30 + i:40 + i, 40:50] = 90  # a "lesion": each film differs
    if text:
        pixels[BOX["y0"]:BOX["y1"], BOX["x0"]:BOX["x1"]] = 255
    return pixels


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def write_review_run(root: Path) -> Path:
    """The run folder at `root` (created)."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(f"run_dir: {root}\ndata:\n  root: null\n", encoding="utf-8")  # defaults
    names = [f"film_{i}.png" for i in range(N_FILMS)]
    (root / "data" / "test").mkdir(parents=True)
    (root / "data" / "test_synthetic.txt").write_text(
        "".join(f"{PATIENT}-{i} {name} COVID-19 ricord\n" for i, name in enumerate(names)), encoding="utf-8")
    for i, name in enumerate(names):
        write_png(root / "data" / "test" / name, film_pixels(i))
        write_png(root / "covidx_pp" / "test" / name, film_pixels(i, text=False))
    flagged = np.arange(N_FILMS) < 3
    share = np.round(0.1 + 0.1 * np.arange(N_FILMS), 3)
    _csv(root / "audit" / "a.csv", pd.DataFrame({
        "filename": names, "patient_id": [f"{PATIENT}-{i}" for i in range(N_FILMS)], "source": "ricord",
        "label": "COVID-19", "predicted": "COVID-19", "target_label": "COVID-19", "text_share": share,
        "text_top5_share": share, "text_area": 0.04, "map_empty": False, "n_text_boxes": 1, "flagged": flagged,
        "counterfactual": True, "cf_target_probability": np.where(flagged, 0.2, 0.7),
        "cf_probability_drop": np.where(flagged, 0.6, 0.1), "cf_predicted": np.where(flagged, "normal", "COVID-19"),
        "cf_prediction_changed": flagged}))
    saliency = np.zeros((N_FILMS, 7, 7), np.float32)
    saliency[:, 0, :3] = 1.0  # on the text plate
    (root / "explain" / "a").mkdir(parents=True)
    np.savez(root / "explain" / "a" / "chunk_0.npz", saliency=saliency, filenames=np.array(names))
    _csv(root / "explain" / "a" / "index.csv", pd.DataFrame({
        "filename": names, "split": "test", "chunk": 0, "row": range(N_FILMS), "target": 2,
        "target_label": "COVID-19", "target_probability": 0.8, "insertion_auc": 0.5, "deletion_auc": 0.2,
        "seconds": 1.0}))
    _csv(root / "text" / "detections.csv", pd.DataFrame({
        "split": "test", "filename": names, "status": "ok", "reason": "", "boxes": json.dumps([BOX]),
        "seconds": 0.1, "config_digest": "d", "image_sha256": ""}))
    sources = [f"test/{name}" for name in names]
    _csv(root / "covidx_pp" / "manifest.csv", pd.DataFrame({
        "source": sources, "output": sources, "split_files": "test_synthetic.txt", "status": "cleaned", "reason": "",
        "boxes": json.dumps([BOX]), "kept_boxes": "[]", "refused_boxes": "[]", "masked_pixels": 192,
        "masked_fraction": 0.0375}))
    return root


def decision(run_dir: Path, i: int, choice: str = review.RELIES, *, sha: str | None = None, when: str = WHEN,
             note: str = "") -> dict[str, str]:
    """A decisions row on film i of the run, made on its present bytes unless `sha` says otherwise."""
    source = f"test/film_{i}.png"
    return {"filename": f"film_{i}.png", "split": "test", "source": source,
            "image_sha256": sha or file_sha256(run_dir / "data" / source), "decision": choice, "note": note,
            "reviewer": "ana", "decided_at": when, "carried_from": ""}


def write(run_dir: Path, rows: list[dict[str, str]]) -> Path:
    """The run's review/decisions.csv with `rows`."""
    path = run_dir / DECISIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def change(run_dir: Path, i: int) -> None:
    """Film i edited after its review (a rerun of the same dataset sees other bytes)."""
    pixels = film_pixels(i)
    pixels[50:60, 5:15] = 0
    write_png(run_dir / "data" / "test" / f"film_{i}.png", pixels)
