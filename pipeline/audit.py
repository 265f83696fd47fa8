"""Audit a classifier's saliency for burned-in text: per-image text shares, flags and text-removal counterfactuals.

For every image with a saliency map (pipeline.explain) and text boxes (pipeline.text):

- `text_share`: the map upsampled bilinearly to the image (corner-aligned, as igos upsamples its masks),
  normalised to sum 1; the mass inside the detected boxes grown by `AuditConfig.dilate` pixels.
- `text_top5_share`: the fraction of the top `top_fraction` (5 %) most salient pixels inside those boxes
  (ties at the cut shared in proportion).
- `text_area`: the fraction of the image the grown boxes cover: the chance level of both shares.
- the counterfactual: inpaint the detected boxes that the text guard accepts (pipeline.clean.screen_boxes
  and clean_image: what COVIDx++ does), classify again, and record the drop of the target probability and
  whether the prediction changed.
- `flagged`, by `AuditConfig.flag_by`: "counterfactual" (default): the prediction changes when the detected
  text alone is inpainted (every image with text gets a counterfactual); "share": text_share ≥
  `AuditConfig.threshold` (the counterfactual then runs on every flagged image and a seeded sample of the
  unflagged images that have text). The map says where the model looks, the counterfactual whether the
  decision rests there: on the synthetic benchmark no threshold on the share comes near the
  counterfactual's precision and recall, even on the true text boxes (benchmarks/results/audit_synthetic.md).

A map that is zero everywhere (no evidence) counts as uniform, so its shares equal `text_area`; `map_empty`
marks it, and the report counts those maps per classifier.

Writes, in the run directory (see docs/run-directory.md): audit/<m>.csv, audit/<m>_by_class.csv,
audit/<m>_by_source.csv, audit/<m>_gallery.npz and audit/<m>_rejected.csv (`stage, split, filename,
reason`; the flow merges it into the run's rejected.csv).

Flag quality (`flag_quality`) is measured on synthetic data against the ground truth "the prediction
changes when the text alone is removed" (`truth_prediction_changed`: the image vs its known text-free
copy); `choose_threshold` picks the threshold from such data.

Share threshold 0.15 (provisional): see `DEFAULT_THRESHOLD`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from datasets.atomic import atomic_path, write_text
from datasets.covidx import Record
from datasets.errors import DatasetError
from datasets.images import read_image
from datasets.rejects import REJECTED_COLUMNS, Rejected
from datasets.synthetic import ImageTruth
from pipeline.checkpoint import CheckpointMeta, load_checkpoint, model_input, weights_path
from pipeline.clean import CleanConfig, clean_image, screen_boxes
from pipeline.text import TextBox, box_mask

LOG = logging.getLogger(__name__)

STAGE = "audit"
TARGETS = ("predicted", "label")
FLAG_RULES = ("counterfactual", "share")
CRITERIA = ("f1", "youden")
# With flag_by "share": flag an image when at least this share of its saliency mass lies on detected text. 0.15 is
# about 5× the area burned-in text covers on a radiograph (2–4 % with the default dilation), so a flag
# means the map clearly concentrates on the text rather than touching it by chance. Recalibrate it with
# `choose_threshold` (F1 against "the prediction changes when the text alone is removed",
# `truth_prediction_changed`) on a synthetic run; the CLI/flow should log the value it chose.
DEFAULT_THRESHOLD = 0.15
COLUMNS = ("filename", "patient_id", "source", "label", "predicted", "target_label", "text_share",
           "text_top5_share", "text_area", "map_empty", "n_text_boxes", "flagged", "counterfactual",
           "cf_target_probability", "cf_probability_drop", "cf_predicted", "cf_prediction_changed")
TRUTH_COLUMNS = ("truth_text_share", "lesion_share")
SUMMARY_COLUMNS = ("group", "images", "flagged", "flagged_rate", "mean_text_share", "mean_text_area",
                   "counterfactuals", "cf_changed_rate", "mean_cf_probability_drop")
NO_SOURCE = "(none)"
_ROUND = 6


class AuditError(ValueError):
    """The audit cannot run as asked (configuration, inputs)."""


@dataclass(frozen=True)
class AuditConfig:
    """Audit settings.

    flag_by: "counterfactual" (default): flag an image when inpainting its detected text changes the
        prediction; "share": when text_share ≥ `threshold` (see the module docstring for why not by default).
    threshold: the text_share of a share flag (DEFAULT_THRESHOLD); with flag_by "counterfactual" it only
        names the high-share images (flow quality "confirmed": high share and the prediction changes).
    dilate: pixels the detected boxes grow on every side before the shares are measured (anti-aliased
        strokes and a map that is smooth at the mask resolution spill just outside a tight box).
    top_fraction: the "top 5 %" of text_top5_share.
    target: the class whose probability the counterfactual follows: "predicted" or "label"; use the
        explanation's ExplainConfig.target so the map and the counterfactual are about the same class.
    cf_unflagged_fraction: with flag_by "share", the fraction of the unflagged images with text that also
        get a counterfactual (a seeded per-image draw: the same image is drawn in every run with the same
        seed); 1 (default) = all: one inpainting and one forward pass per image, cheap next to iGOS++.
        With flag_by "counterfactual" every image with text gets one.
    seed: seed of that draw, in [0, 2**32 - 1].
    gallery_size: images in the gallery (highest text_share); gallery_side: their longest side (pixels).
    batch_size: images per classifier forward pass; device: torch device.
    clean: how text is inpainted (pipeline.clean; Telea r=10, as COVIDx++).
    """

    flag_by: str = "counterfactual"
    threshold: float = DEFAULT_THRESHOLD
    dilate: int = 2
    top_fraction: float = 0.05
    target: str = "predicted"
    cf_unflagged_fraction: float = 1.0
    seed: int = 0
    gallery_size: int = 8
    gallery_side: int = 256
    batch_size: int = 16
    device: str = "cpu"
    clean: CleanConfig = field(default_factory=CleanConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise AuditError(f"threshold must be in [0, 1] (a share of the saliency mass), got {self.threshold}")
        if not 0 < self.top_fraction <= 1:
            raise AuditError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0 <= self.cf_unflagged_fraction <= 1:
            raise AuditError(f"cf_unflagged_fraction must be in [0, 1], got {self.cf_unflagged_fraction}")
        if self.flag_by not in FLAG_RULES:
            raise AuditError(f"flag_by must be one of {FLAG_RULES}, got {self.flag_by!r}")
        if self.target not in TARGETS:
            raise AuditError(f"target must be one of {TARGETS}, got {self.target!r}")
        for name, low in (("dilate", 0), ("seed", 0), ("gallery_size", 0), ("gallery_side", 8), ("batch_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise AuditError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.seed > 2**32 - 1:
            raise AuditError(f"seed must be at most 2**32 - 1, got {self.seed}")


class SyntheticTruth(NamedTuple):
    """Ground truth of a synthetic split: datasets.synthetic.read_truth(root, split) and the dataset root."""

    images: Sequence[ImageTruth]
    root: Path


@dataclass(frozen=True)
class AuditResult:
    """The tables written (table: audit/<m>.csv) and the files' paths."""

    table: pd.DataFrame
    by_class: pd.DataFrame
    by_source: pd.DataFrame
    rejected: pd.DataFrame
    table_path: Path
    gallery_path: Path
    seconds: float


# ---- shares --------------------------------------------------------------------------------------


def upsample_saliency(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Map (s, s) → (H, W) float64 in [0, 1]: bilinear, corner-aligned (igos's mask upsampling)."""
    tensor = torch.as_tensor(np.asarray(saliency, np.float64))[None, None]
    if tuple(tensor.shape[-2:]) != tuple(shape):
        tensor = nn.functional.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=True)
    return tensor[0, 0].clamp(0, 1).numpy()


def saliency_shares(saliency: np.ndarray, region: np.ndarray, top_fraction: float = 0.05) -> tuple[float, float]:
    """(mass share, top share) of a map (H, W) ≥ 0 in the boolean region (H, W).

    mass share: Σ map[region] / Σ map. top share: of the k = ⌈top_fraction · H · W⌉ most salient pixels, the
    fraction in the region; pixels tied at the k-th value count in proportion (the expectation over random
    tie-breaks), so plateaus do not bias it. A map that sums to zero counts as uniform (both shares equal
    the region's area).
    """
    values = np.asarray(saliency, np.float64)
    region = np.asarray(region, bool)
    if region.shape != values.shape:
        raise AuditError(f"map {values.shape} and region {region.shape} differ in shape")
    total = values.sum()
    if total <= 0:
        area = float(region.mean())
        return area, area
    flat = values.ravel()
    k = max(1, math.ceil(top_fraction * flat.size))
    cutoff = np.partition(flat, flat.size - k)[flat.size - k]
    above, tied = values > cutoff, values == cutoff
    in_top = (above & region).sum() + (k - above.sum()) * (tied & region).sum() / tied.sum()
    return float(values[region].sum() / total), float(in_top / k)


# ---- the audit -----------------------------------------------------------------------------------


def audit_split(
    checkpoint: str | Path, records: Sequence[Record], saliency: Mapping[str, np.ndarray],
    detections: Mapping[str, Sequence[TextBox]], out_dir: str | Path, config: AuditConfig, *,
    truth: SyntheticTruth | tuple[Sequence[ImageTruth], str | Path] | None = None, split: str = "",
    name: str | None = None,
) -> AuditResult:
    """Audit the classifier at `checkpoint` on `records` and write audit/<m>*.

    saliency: filename → map (s, s) in [0, 1] (pipeline.explain.load_saliency). detections: filename →
    text boxes in the image's own pixels. truth: on synthetic data, the ground truth (adds
    truth_text_share and lesion_share). out_dir: the run directory; `m` is `name` or the checkpoint stem.
    Images that cannot be read, or lack a map or a detection, are recorded in audit/<m>_rejected.csv.
    """
    started = time.perf_counter()
    truth = SyntheticTruth(truth[0], Path(truth[1])) if truth is not None else None
    truth_of = {item.filename: item for item in truth.images} if truth is not None else {}
    model, meta = load_checkpoint(checkpoint, device=config.device)
    rows: list[dict] = []
    rejected: list[dict] = []
    for batch in _batches(records, config.batch_size):
        images: list[np.ndarray] = []
        kept: list[Record] = []
        for record in batch:
            reason = _missing_input(record, meta, saliency, detections, config, truth_of if truth else None)
            image = None
            if reason is None:
                try:
                    image = read_image(record.path)
                except (DatasetError, OSError) as error:
                    reason = Rejected.of(record.filename, error).reason
            if reason is not None:
                LOG.warning("rejected %s: %s", record.filename, reason)
                rejected.append({"stage": STAGE, "split": split, "filename": record.filename, "reason": reason})
                continue
            images.append(image)
            kept.append(record)
        rows += _audit_batch(model, meta, kept, images, saliency, detections, config, truth, truth_of)
    table = pd.DataFrame(rows, columns=list(COLUMNS) + (list(TRUTH_COLUMNS) if truth else []))
    table["flagged"] = table["flagged"].astype(bool)
    table["counterfactual"] = table["counterfactual"].astype(bool)

    audit_dir = Path(out_dir) / "audit"
    m = name or weights_path(checkpoint).stem
    by_class, by_source = summarise(table, "label"), summarise(table, "source")
    table_path = _write_csv(audit_dir / f"{m}.csv", table)
    _write_csv(audit_dir / f"{m}_by_class.csv", by_class)
    _write_csv(audit_dir / f"{m}_by_source.csv", by_source)
    rejected_table = pd.DataFrame(rejected, columns=REJECTED_COLUMNS)
    _write_csv(audit_dir / f"{m}_rejected.csv", rejected_table)
    gallery_path = write_gallery(audit_dir / f"{m}_gallery.npz", table, records, saliency, detections, config)
    seconds = time.perf_counter() - started
    LOG.info("audit %s: %d images, %d flagged, %d rejected, %.1f s", m, len(table), int(table["flagged"].sum()),
             len(rejected_table), seconds)
    return AuditResult(table, by_class, by_source, rejected_table, table_path, gallery_path, seconds)


def summarise(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per-group summary of an audit table (contract columns, plus mean_lesion_share with ground truth)."""
    columns = list(SUMMARY_COLUMNS) + (["mean_lesion_share"] if "lesion_share" in table else [])
    out = []
    keys = table[by].fillna("").replace("", NO_SOURCE) if len(table) else table[by]
    for group, rows in table.groupby(keys, sort=True):
        cf = rows[rows["counterfactual"]]
        row = {"group": group, "images": len(rows), "flagged": int(rows["flagged"].sum()),
               "flagged_rate": rows["flagged"].mean(), "mean_text_share": rows["text_share"].mean(),
               "mean_text_area": rows["text_area"].mean(), "counterfactuals": len(cf),
               "cf_changed_rate": cf["cf_prediction_changed"].astype(float).mean() if len(cf) else np.nan,
               "mean_cf_probability_drop": cf["cf_probability_drop"].astype(float).mean() if len(cf) else np.nan}
        if "lesion_share" in table:
            row["mean_lesion_share"] = rows["lesion_share"].mean()
        out.append(row)
    return pd.DataFrame(out, columns=columns).round(_ROUND)


def write_gallery(path: str | Path, table: pd.DataFrame, records: Sequence[Record], saliency: Mapping[str, np.ndarray],
                  detections: Mapping[str, Sequence[TextBox]], config: AuditConfig) -> Path:
    """audit/<m>_gallery.npz: the `gallery_size` images of `table` with the highest text_share.

    Each is resized so its long side is at most `gallery_side` (area interpolation); images of different
    shapes are zero-padded at the bottom and right to a common (H, W); `shapes` (k, 2) holds each one's own
    size. Arrays: filenames, labels, predicted, text_share (k,); images, saliency, inpainted (k, H, W)
    float32 in [0, 1]; boxes: JSON, per image a list of [x0, y0, x1, y1] in the resized pixels.
    """
    top = table.sort_values(["text_share", "filename"], ascending=[False, True]).head(config.gallery_size)
    path_of = {record.filename: record.path for record in records}
    pictures, maps, cleaned, shapes, boxes = [], [], [], [], []
    for filename in top["filename"]:
        image = read_image(path_of[filename])
        factor = min(1.0, config.gallery_side / max(image.shape))
        size = (max(1, round(image.shape[0] * factor)), max(1, round(image.shape[1] * factor)))
        inpainted, _ = clean_image(image, screen_boxes(image, detections[filename], config.clean)[0], config.clean)
        pictures.append(_resize(image, size))
        cleaned.append(_resize(inpainted, size))
        maps.append(upsample_saliency(saliency[filename], size).astype(np.float32))
        shapes.append(size)
        boxes.append([[math.floor(b.x0 * factor), math.floor(b.y0 * factor), math.ceil(b.x1 * factor),
                       math.ceil(b.y1 * factor)] for b in detections[filename]])
    height = max((h for h, _ in shapes), default=0)
    width = max((w for _, w in shapes), default=0)
    arrays = {
        "filenames": top["filename"].to_numpy(str), "labels": top["label"].to_numpy(str),
        "predicted": top["predicted"].to_numpy(str), "text_share": top["text_share"].to_numpy(np.float64),
        "images": _pad(pictures, height, width), "saliency": _pad(maps, height, width),
        "inpainted": _pad(cleaned, height, width), "shapes": np.array(shapes, np.int64).reshape(-1, 2),
        "boxes": np.array(json.dumps(boxes)),
    }
    path = Path(path)
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


# ---- ground truth and flag quality --------------------------------------------------------------


def truth_prediction_changed(checkpoint: str | Path, records: Sequence[Record], truth_root: str | Path, *,
                             batch_size: int = 16, device: str = "cpu") -> dict[str, bool]:
    """filename → whether the prediction on the image differs from the prediction on its text-free copy.

    records: a synthetic split (datasets.synthetic.split_records) whose images lie under `truth_root`;
    the text-free copy of root/<rel> is root/clean/<rel>. Images that cannot be read are left out (logged).
    """
    root = Path(truth_root)
    model, meta = load_checkpoint(checkpoint, device=device)
    changed: dict[str, bool] = {}
    for batch in _batches(records, batch_size):
        pairs, names = [], []
        for record in batch:
            try:
                clean_path = root / "clean" / Path(record.path).resolve().relative_to(root.resolve())
                pairs += [read_image(record.path), read_image(clean_path)]
            except (DatasetError, OSError, ValueError) as error:
                LOG.warning("no ground truth for %s: %s", record.filename, error)
                continue
            names.append(record.filename)
        predicted = _probabilities(model, meta, pairs, device).argmax(axis=1) if pairs else np.zeros(0, int)
        changed.update({name: bool(predicted[2 * i] != predicted[2 * i + 1]) for i, name in enumerate(names)})
    return changed


def flag_quality(table: pd.DataFrame, truth_changed: Mapping[str, bool]) -> dict[str, float]:
    """Flags and text shares against the ground truth "the prediction changes when the text alone is removed".

    table: an audit table (filename, flagged, text_share, text_top5_share; truth_text_share on synthetic
    data); truth_changed: filename → changed. Over the images in both: flag_precision, flag_recall (NaN when
    undefined); the ROC AUC of each share as a score (NaN when the truth has one class only):
    share_roc_auc (text_share), top5_share_roc_auc and, where the table has it, truth_share_roc_auc
    (the saliency mass on the ground-truth text boxes: the share with a perfect detector); and the counts
    images, positives, flagged.
    """
    known = table[table["filename"].isin(truth_changed.keys())]
    changed = known["filename"].map(truth_changed).to_numpy(bool)
    flagged = known["flagged"].to_numpy(bool)
    hits = int((flagged & changed).sum())
    both_classes = 0 < changed.sum() < len(changed)
    scores = {"share_roc_auc": "text_share", "top5_share_roc_auc": "text_top5_share",
              "truth_share_roc_auc": "truth_text_share"}
    return {
        "flag_precision": hits / flagged.sum() if flagged.any() else math.nan,
        "flag_recall": hits / changed.sum() if changed.any() else math.nan,
        **{name: float(roc_auc_score(changed, known[column])) if both_classes else math.nan
           for name, column in scores.items() if column in known},
        "images": len(known), "positives": int(changed.sum()), "flagged": int(flagged.sum()),
    }


def choose_threshold(shares: Sequence[float] | np.ndarray, changed: Sequence[bool] | np.ndarray, *,
                     criterion: str = "f1") -> float:
    """The flag threshold t (flag when share ≥ t) that best separates `changed` images, from data.

    criterion "f1": maximise the F1 of the flags; "youden": maximise TPR − FPR on the ROC curve. t is one
    of the observed shares; ties go to the highest t (fewest flags). Raises AuditError unless both
    classes are present.
    """
    shares = np.asarray(shares, np.float64)
    changed = np.asarray(changed, bool)
    if criterion not in CRITERIA:
        raise AuditError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if shares.shape != changed.shape or shares.ndim != 1:
        raise AuditError(f"shares {shares.shape} and changed {changed.shape} must be 1-D of one length")
    if not 0 < changed.sum() < len(changed):
        raise AuditError("choose_threshold needs images whose prediction changed and images whose did not")
    if criterion == "youden":
        false_rate, true_rate, thresholds = roc_curve(changed, shares)
        best = int(np.argmax(true_rate[1:] - false_rate[1:])) + 1  # index 0 is the "flag nothing" point (+inf)
        return float(thresholds[best])
    order = np.argsort(-shares, kind="stable")
    sorted_shares, hits = shares[order], np.cumsum(changed[order])
    last = np.r_[sorted_shares[1:] != sorted_shares[:-1], True]  # last position of each distinct share
    flagged = np.arange(1, len(shares) + 1)[last]
    f1 = 2 * hits[last] / (flagged + changed.sum())
    return float(sorted_shares[last][int(np.argmax(f1))])


# ---- internals -----------------------------------------------------------------------------------


def _batches(records: Sequence[Record], size: int) -> Iterator[Sequence[Record]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def _missing_input(record: Record, meta: CheckpointMeta, saliency: Mapping[str, np.ndarray],
                   detections: Mapping[str, Sequence[TextBox]], config: AuditConfig,
                   truth_of: Mapping[str, ImageTruth] | None) -> str | None:
    """Why a record cannot be audited before its image is read, or None."""
    if record.path is None:
        return "no image path (read the split with its image folder)"
    if record.filename not in saliency:
        return "no saliency map (not explained, or rejected by the explain stage)"
    if record.filename not in detections:
        return "no text detection (not detected, or rejected by the text stage)"
    if config.target == "label" and record.label not in meta.labels:
        return f"label {record.label!r} is not a class of the checkpoint {meta.labels}"
    if truth_of is not None and record.filename not in truth_of:
        return "no ground truth for this image"
    return None


def _probabilities(model: nn.Module, meta: CheckpointMeta, images: Sequence[np.ndarray], device: str) -> np.ndarray:
    """Softmax probabilities (n, K) of images (H_i, W_i) in [0, 1], each resized by model_input."""
    inputs = torch.cat([model_input(torch.from_numpy(np.asarray(image, np.float32))[None], meta) for image in images])
    with torch.no_grad():
        return torch.softmax(model(inputs.to(device)).double(), dim=1).cpu().numpy()


def _audit_batch(model: nn.Module, meta: CheckpointMeta, records: Sequence[Record], images: Sequence[np.ndarray],
                 saliency: Mapping[str, np.ndarray], detections: Mapping[str, Sequence[TextBox]], config: AuditConfig,
                 truth: SyntheticTruth | None, truth_of: Mapping[str, ImageTruth]) -> list[dict]:
    """Rows of one batch of readable images: shares, flag, prediction and (where chosen) the counterfactual."""
    if not records:
        return []
    probabilities = _probabilities(model, meta, images, config.device)
    rows, inpainted, cf_rows = [], [], []
    for record, image, probs in zip(records, images, probabilities, strict=True):
        boxes = list(detections[record.filename])
        upsampled = upsample_saliency(saliency[record.filename], image.shape)
        region = box_mask(image.shape, boxes, config.dilate)
        share, top_share = saliency_shares(upsampled, region, config.top_fraction)
        predicted = int(np.argmax(probs))
        target = predicted if config.target == "predicted" else meta.labels.index(record.label)
        flagged = config.flag_by == "share" and share >= config.threshold
        row = {"filename": record.filename, "patient_id": record.patient_id, "source": record.source or "",
               "label": record.label, "predicted": meta.labels[predicted], "target_label": meta.labels[target],
               "text_share": round(share, _ROUND), "text_top5_share": round(top_share, _ROUND),
               "text_area": round(float(region.mean()), _ROUND),
               "map_empty": not bool(np.any(saliency[record.filename])), "n_text_boxes": len(boxes), "flagged": flagged,
               "counterfactual": False, "cf_target_probability": None, "cf_probability_drop": None,
               "cf_predicted": None, "cf_prediction_changed": None, "_target": target, "_probability": probs[target]}
        if truth is not None:
            row.update(_truth_shares(truth, truth_of[record.filename], upsampled, config))
        if boxes and (flagged or config.flag_by == "counterfactual" or _sampled(record.filename, config)):
            # The boxes COVIDx++ would inpaint: those the text guard accepts (pipeline.clean.screen_boxes).
            inpainted.append(clean_image(image, screen_boxes(image, boxes, config.clean)[0], config.clean)[0])
            cf_rows.append(row)
        rows.append(row)
    if cf_rows:
        for row, probs in zip(cf_rows, _probabilities(model, meta, inpainted, config.device), strict=True):
            cf_predicted = meta.labels[int(np.argmax(probs))]
            row.update(counterfactual=True, cf_target_probability=round(float(probs[row["_target"]]), _ROUND),
                       cf_probability_drop=round(float(row["_probability"] - probs[row["_target"]]), _ROUND),
                       cf_predicted=cf_predicted, cf_prediction_changed=cf_predicted != row["predicted"])
            if config.flag_by == "counterfactual":
                row["flagged"] = row["cf_prediction_changed"]
    for row in rows:
        del row["_target"], row["_probability"]
    return rows


def _truth_shares(truth: SyntheticTruth, item: ImageTruth, upsampled: np.ndarray, config: AuditConfig
                  ) -> dict[str, float]:
    """truth_text_share (on the dilated ground-truth boxes) and lesion_share of one upsampled map (H, W)."""
    boxes = [TextBox(box.x0, box.y0, box.x1, box.y1, 1.0) for box in item.text_boxes]
    text, _ = saliency_shares(upsampled, box_mask(upsampled.shape, boxes, config.dilate))
    lesion = read_image(truth.root / item.lesion) > 0.5
    if lesion.shape != upsampled.shape:
        raise AuditError(f"{truth.root / item.lesion}: lesion mask {lesion.shape} does not match the image "
                         f"{upsampled.shape}")
    lesion_share, _ = saliency_shares(upsampled, lesion)
    return {"truth_text_share": round(text, _ROUND), "lesion_share": round(lesion_share, _ROUND)}


def _sampled(filename: str, config: AuditConfig) -> bool:
    """The seeded per-image draw of an unflagged image for a counterfactual (probability cf_unflagged_fraction)."""
    digest = hashlib.sha256(f"{config.seed}\n{filename}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < config.cf_unflagged_fraction


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 → (h, w) with area interpolation (identity when the size is unchanged)."""
    if image.shape == size:
        return image.astype(np.float32)
    return cv2.resize(image.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA).clip(0, 1)


def _pad(pictures: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Stack (h_i, w_i) pictures into (k, height, width) float32, zero-padded at the bottom and right."""
    out = np.zeros((len(pictures), height, width), np.float32)
    for i, picture in enumerate(pictures):
        out[i, :picture.shape[0], :picture.shape[1]] = picture
    return out


def _write_csv(path: Path, table: pd.DataFrame) -> Path:
    return write_text(path, table.to_csv(index=False, lineterminator="\n"))
