"""The probe itself: pipeline.models' small CNN trained for a few seeded epochs on small pictures.

A probe asks "is there a learnable signal?", not "how good can a classifier get?": it is trained with a
fixed number of epochs (no validation split, so nothing is selected on the test films), class-balanced
cross-entropy and no augmentation, and is CPU-cheap (64 px, a few hundred films: seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models import build_classifier
from pipeline.train import class_weights


@dataclass(frozen=True)
class ProbeConfig:
    """How a probe is trained and scored.

    image_size: the probe's input side (pixels); work_size: the side views are composed at
    (pipeline.probes.views). epochs, batch_size, learning_rate, weight_decay: Adam on the small CNN
    (pipeline.models.SmallCNN). n_resamples, confidence: the patient-cluster bootstrap of the AUCs.
    seed: the network's initialisation, the batches and the bootstrap.
    """

    image_size: int = 64
    work_size: int = 256
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 16 <= self.image_size <= self.work_size <= 2048:
            problems.append(f"need 16 <= image_size <= work_size <= 2048, got {self.image_size}, {self.work_size}")
        if self.epochs < 1 or self.batch_size < 2:
            problems.append(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0) or self.weight_decay < 0:
            problems.append(f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, "
                            f"{self.weight_decay}")
        if self.n_resamples < 0 or not 0 < self.confidence < 1:
            problems.append(f"n_resamples must be >= 0 and confidence in (0, 1), got {self.n_resamples}, "
                            f"{self.confidence}")
        if not 0 <= self.seed <= 2**32 - 1:
            problems.append(f"seed must be in [0, 2**32 - 1], got {self.seed}")
        if problems:
            raise ValueError("invalid ProbeConfig: " + "; ".join(problems))


def _standardise(images: torch.Tensor) -> torch.Tensor:
    """(n, S, S) in [0, 1] → (n, 1, S, S), centred and scaled like the classifiers' input (mean 0.5, std 0.25)."""
    return ((images.float() - 0.5) / 0.25).unsqueeze(1)


def train_probe(images: torch.Tensor, targets: torch.Tensor, n_classes: int, config: ProbeConfig) -> nn.Module:
    """A small CNN trained on images (n, S, S) in [0, 1] to predict targets (n,) in [0, n_classes).

    Deterministic on CPU for a given seed and thread count; runs on CPU (the probes are small).
    """
    torch.manual_seed(config.seed)
    model = build_classifier("small_cnn", n_classes)
    weights = class_weights(targets, [str(k) for k in range(n_classes)], "balanced")
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    inputs = _standardise(images)
    for _ in range(config.epochs):
        model.train()
        for batch in torch.randperm(len(targets), generator=generator).split(config.batch_size):
            if len(batch) < 2:  # BatchNorm cannot train on one image
                continue
            optimizer.zero_grad()
            loss = criterion(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def probabilities(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (n, k) of images (n, S, S) in [0, 1]."""
    model.eval()
    inputs = _standardise(images)
    outputs = [model(batch).softmax(dim=1) for batch in inputs.split(batch_size)]
    return torch.cat(outputs) if outputs else torch.empty((0, 0))


def fit_and_score(train_images: torch.Tensor, train_targets: torch.Tensor, test_images: torch.Tensor,
                  n_classes: int, config: ProbeConfig) -> torch.Tensor:
    """Train a probe on the training pictures and return its probabilities (n_test, n_classes) on the test ones."""
    return probabilities(train_probe(train_images, train_targets, n_classes, config), test_images)
