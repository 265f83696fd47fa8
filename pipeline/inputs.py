"""What a classifier reads: the class order of a split, its images resized to the model's input, and
eval-mode logits in batches. Shared by training (its preload and validation) and prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from datasets.covidx import LABELS_3CLASS, LABELS_BINARY, Record
from datasets.images import read_image
from pipeline.checkpoint import CheckpointMeta, model_input


def label_order(records: Sequence[Record]) -> tuple[str, ...]:
    """The model's class order for these records: LABELS_3CLASS or LABELS_BINARY, by the labels' scheme."""
    labels = {record.label for record in records}
    for scheme in (LABELS_3CLASS, LABELS_BINARY):
        if labels <= set(scheme):
            return scheme
    raise ValueError(f"labels {sorted(labels)} mix schemes: expected all of {LABELS_3CLASS} or of {LABELS_BINARY}")


def load_resized(record: Record, size: int) -> torch.Tensor:
    """The record's image (read_image) resized to (size, size), float32 in [0, 1].

    Same resampling as pipeline.checkpoint.model_input (antialiased bilinear). Raises ValueError /
    OSError (datasets.errors.ImageReadError is a ValueError) when the image cannot be read.
    """
    if record.path is None:
        raise ValueError(f"{record.filename}: record has no image path: read the split with its image folder")
    image = torch.from_numpy(read_image(record.path))[None, None]
    if image.shape[-2:] != (size, size):
        image = nn.functional.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=True)
    return image[0, 0].clamp(0, 1)


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor, meta: CheckpointMeta, batch_size: int,
              device: str | torch.device = "cpu") -> torch.Tensor:
    """Eval-mode logits (n, k) on CPU of images (n, S, S) uint8 or (n, S, S) float in [0, 1]."""
    model.eval()
    outputs = []
    for batch in images.split(batch_size):
        pixels = batch.unsqueeze(1).float() / (255 if batch.dtype == torch.uint8 else 1)
        outputs.append(model(model_input(pixels, meta).to(device)).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty((0, len(meta.labels)))
