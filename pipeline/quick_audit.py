"""A quick, self-checking audit on synthetic radiographs: train a small CNN, explain it with iGOS++,
and measure how much of each explanation lies on burned-in text (ground-truth boxes).

This is the demo's computation; the full audit (real COVIDx folders, CRAFT text detection,
COVIDx++) grows out of it stage by stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

import igos
from datasets.synthetic import LABELS, SyntheticImage, sample
from pipeline.models import build_classifier

# Model-input normalisation: (x − 0.5) / 0.225 puts [0, 1] radiographs on the ImageNet-like scale the
# iGOS++ defaults (noise std 0.2, BTV σ 0.01) were set for.
INPUT_MEAN, INPUT_STD = 0.5, 0.225


@dataclass(frozen=True)
class QuickAuditConfig:
    """Sizes and seeds of the quick audit; the defaults run in about two minutes on 2 CPU cores."""

    n_train: int = 360
    n_test: int = 90
    n_explain: int = 6
    image_size: int = 96
    shortcut: float = 0.9
    architecture: str = "small_cnn"
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    mask_size: int = 28
    igos_mode: str = "fast"
    igos_iterations: int = 20
    igos_ig_steps: int = 15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.igos_mode not in ("fast", "faithful"):
            raise ValueError(f"igos_mode must be 'fast' or 'faithful', got {self.igos_mode!r}")
        if min(self.n_train, self.n_test, self.n_explain, self.epochs) < 1 or self.n_explain > self.n_test:
            raise ValueError("n_train, n_test, epochs must be >= 1 and 1 <= n_explain <= n_test")


@dataclass
class QuickAuditResult:
    """table: one row per explained image; saliency: (n, H, W) in [0, 1] at image resolution."""

    test_accuracy: float
    table: pd.DataFrame
    images: list[SyntheticImage]
    saliency: np.ndarray


def to_model_input(images: list[SyntheticImage]) -> torch.Tensor:
    """Stack images into the normalised model input (n, 1, H, W) float32."""
    pixels = torch.from_numpy(np.stack([item.image for item in images])).float()
    return ((pixels - INPUT_MEAN) / INPUT_STD).unsqueeze(1)


def train_classifier(images: list[SyntheticImage], config: QuickAuditConfig) -> nn.Module:
    """Adam with a one-cycle learning-rate schedule on cross-entropy, shuffled mini-batches,
    deterministic by config.seed."""
    torch.manual_seed(config.seed)
    model = build_classifier(config.architecture, len(LABELS))
    inputs = to_model_input(images)
    labels = torch.tensor([LABELS.index(item.label) for item in images])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    batches_per_epoch = -(-len(images) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate,
                                                   total_steps=config.epochs * batches_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for _ in range(config.epochs):
        for batch in torch.randperm(len(images), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def share_inside(saliency: np.ndarray, region: np.ndarray) -> float:
    """Fraction of the saliency mass (H, W) that lies in the boolean region (H, W); 0 for an empty map."""
    total = float(saliency.sum())
    return float(saliency[region].sum()) / total if total > 0 else 0.0


def text_region(item: SyntheticImage) -> np.ndarray:
    """Boolean (H, W) mask of the image's text boxes."""
    region = np.zeros(item.image.shape, dtype=bool)
    for box in item.text_boxes:
        region[box.y0 : box.y1, box.x0 : box.x1] = True
    return region


def run_quick_audit(config: QuickAuditConfig) -> QuickAuditResult:
    """Generate data, train, explain `n_explain` test images with iGOS++ and measure them."""
    train = sample(config.n_train, size=config.image_size, seed=config.seed, shortcut=config.shortcut)
    test = sample(config.n_test, size=config.image_size, seed=config.seed + 1, shortcut=config.shortcut)
    model = train_classifier(train, config)
    inputs = to_model_input(test)
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1)
    labels = torch.tensor([LABELS.index(item.label) for item in test])
    accuracy = float((predicted == labels).float().mean())

    chosen = test[: config.n_explain]
    started = time.perf_counter()
    explanation = igos.explain(model, inputs[: config.n_explain], method="igos++", mask_size=config.mask_size,
                               seed=config.seed, mode=config.igos_mode, iterations=config.igos_iterations,
                               ig_steps=config.igos_ig_steps)
    seconds = time.perf_counter() - started
    causal = igos.insertion_deletion(model, inputs[: config.n_explain], explanation.saliency,
                                     targets=explanation.targets)
    saliency = explanation.upsample().numpy()
    iterations = (~torch.isnan(explanation.history["loss"])).sum(dim=0)
    rows = []
    for i, item in enumerate(chosen):
        text = text_region(item)
        rows.append({
            "image": i,
            "label": item.label,
            "source": item.source,
            "predicted": LABELS[int(explanation.targets[i])],
            "probability": round(float(explanation.target_scores[i]), 4),
            "text_share": round(share_inside(saliency[i], text), 4),
            "text_area": round(float(text.mean()), 4),
            "lesion_share": round(share_inside(saliency[i], item.lesion), 4),
            "insertion_auc": round(float(causal.insertion[i]), 4),
            "deletion_auc": round(float(causal.deletion[i]), 4),
            "iterations": int(iterations[i]),
            "seconds_per_image": round(seconds / len(chosen), 3),
        })
    return QuickAuditResult(accuracy, pd.DataFrame(rows), chosen, saliency)
