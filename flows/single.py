"""Single-image and folder commands of the CLI: one iGOS++ heatmap, text boxes of a list of files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from datasets.atomic import write_bytes, write_text
from pipeline.audit import upsample_saliency
from pipeline.explain import ExplainConfig, explain_image
from pipeline.text import TextConfig, detect_files
from reports.figures import saliency_figure_png

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})


def heatmap(image_path: Path, checkpoint: Path, out: Path, *, mask_size: int, iterations: int,
            target: str | None) -> tuple[Path, str, float]:
    """Write the image | iGOS++ overlay PNG of one radiograph; returns (PNG path, class, probability)."""
    result = explain_image(image_path, checkpoint, ExplainConfig(mask_size=mask_size, iterations=iterations),
                           target=target)
    saliency = upsample_saliency(result.saliency, result.image.shape)
    title = f"{image_path.name}: {result.target_label} p={result.target_probability:.2f}"
    write_bytes(out, saliency_figure_png(result.image, saliency, title=title))
    return out, result.target_label, result.target_probability


def image_files(items: Sequence[Path]) -> list[Path]:
    """The files given, with folders expanded to the radiographs (PNG, JPEG, DICOM) inside them, sorted."""
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def detect_images(items: Sequence[Path], out: Path, *, config: TextConfig) -> pd.DataFrame:
    """Text boxes of every file → CSV `path, status, reason, n_boxes, boxes` (boxes: JSON, image pixels)."""
    rows = []
    for found in detect_files(image_files(items), config=config):
        rows.append({"path": found.item, "status": "rejected" if found.error else "ok", "reason": found.error or "",
                     "n_boxes": len(found.boxes), "boxes": json.dumps([box.to_dict() for box in found.boxes])})
    table = pd.DataFrame(rows, columns=["path", "status", "reason", "n_boxes", "boxes"])
    write_text(out, table.to_csv(index=False, lineterminator="\n"))
    return table
