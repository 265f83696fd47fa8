"""Run a trained classifier on a split: `predictions/<m>_<split>.csv` (docs/run-directory.md) and the rejects.

Images are read in batches (datasets.images.read_image → resize as pipeline.checkpoint.model_input),
so memory stays at one batch whatever the split's size. The checkpoint's class order must be the
data's (LABELS_3CLASS or LABELS_BINARY); a model whose outputs are not finite is an error, never a
table of NaNs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from datasets.atomic import write_text
from datasets.covidx import Record
from datasets.rejects import Rejected
from pipeline.checkpoint import CheckpointError, load_checkpoint
from pipeline.inputs import label_order, load_resized, logits_of


@dataclass
class PredictResult:
    """table: the rows written (one per readable image, in input order); rejected: images not read."""

    table: pd.DataFrame
    rejected: list[Rejected]


def prediction_columns(labels: Sequence[str]) -> list[str]:
    """The predictions table's columns for a checkpoint with class order `labels`."""
    return ["filename", "patient_id", "source", "label", "predicted", "correct", *(f"prob_{label}" for label in labels)]


def predict_split(
    checkpoint: str | Path, records: Sequence[Record], out_csv: str | Path, *, batch_size: int = 64,
    device: str | torch.device | None = None,
) -> PredictResult:
    """Predict every record (with image paths) and write `out_csv` atomically.

    Columns: prediction_columns(checkpoint labels); prob_<label> are softmax probabilities (sum 1).
    Raises CheckpointError (naming the checkpoint) when its class order is not the data's, when it cannot
    be loaded, or when the model outputs NaN/inf; nothing is written then. Unreadable images are
    returned in `rejected` and left out of the table. device: default CUDA when available.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, meta = load_checkpoint(checkpoint, labels=label_order(records), device=device)
    kept: list[Record] = []
    rejected: list[Rejected] = []
    probabilities = []
    for start in range(0, len(records), batch_size):
        images = []
        for record in records[start : start + batch_size]:
            try:
                images.append(load_resized(record, meta.image_size))
            except (OSError, ValueError) as error:
                rejected.append(Rejected.of(record.filename, error))
                continue
            kept.append(record)
        if not images:
            continue
        logits = logits_of(model, torch.stack(images), meta, batch_size, device)
        bad = ~torch.isfinite(logits).all(dim=1)
        if bad.any():
            example = kept[len(kept) - len(images) + int(bad.nonzero()[0, 0])].filename
            raise CheckpointError(checkpoint, f"the model outputs NaN or inf for {int(bad.sum())} image(s), e.g. "
                                  f"{example}: the weights are corrupt or training diverged; no predictions written")
        probabilities.append(logits.double().softmax(dim=1))
    probs = torch.cat(probabilities) if probabilities else torch.empty((0, len(meta.labels)), dtype=torch.float64)
    predicted = [meta.labels[index] for index in probs.argmax(dim=1).tolist()]
    table = pd.DataFrame({
        "filename": [record.filename for record in kept],
        "patient_id": [record.patient_id for record in kept],
        "source": [record.source or "" for record in kept],
        "label": [record.label for record in kept],
        "predicted": predicted,
        "correct": [record.label == label for record, label in zip(kept, predicted, strict=True)],
        **{f"prob_{label}": probs[:, index].numpy() for index, label in enumerate(meta.labels)},
    }, columns=prediction_columns(meta.labels))
    write_text(out_csv, table.to_csv(index=False))
    return PredictResult(table, rejected)
