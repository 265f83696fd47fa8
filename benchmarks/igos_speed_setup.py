"""The speed benchmark's settings and subjects (`python -m benchmarks.igos_speed`): its Config and per-setting
Measurement, the §8 network terms per iteration, and the model, images and top-1 calibration that
benchmarks.igos_gpu shares."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18

from benchmarks.common import IMAGENET_MEAN, IMAGENET_STD

TARGET_TOP1 = 0.8
# Network terms per iteration of each variant (docs/igos.md §8): IG calls, and S terms per loss evaluation.
TERMS = {"igos++": 4, "igos+": 2, "igos": 1, "igos-insertion": 1}
SEED_NOISE_OFFSET = 10_000  # the reseeded runs that measure how much a map changes with the seed alone


@dataclass
class Config:
    """Settings of one benchmark run (all of them recorded in the output header)."""

    device: torch.device
    methods: list[str]
    modes: list[str]
    batch_sizes: list[int]
    images: int
    image_size: int
    mask_size: int
    iterations: int
    ig_steps: int
    forward_batch: int
    seed: int
    threads: int | None
    quick: bool
    gpu_throughput: bool
    out: Path


@dataclass
class Measurement:
    """One method × mode × batch size: per-call timings and per-image results."""

    method: str
    mode: str
    batch: int
    seconds_per_image: list[float] = field(default_factory=list)
    forwards: int = 0
    backwards: int = 0
    expected_forwards: int = 0
    expected_backwards: int = 0
    iterations_run: list[int] = field(default_factory=list)
    trials: list[int] = field(default_factory=list)
    saliency: dict[int, Tensor] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.saliency)

    @property
    def median_seconds(self) -> float:
        """Median over calls of (call time / batch)."""
        return statistics.median(self.seconds_per_image)

    @property
    def mean_seconds(self) -> float:
        """Total time / images: comparable across batch sizes (a median over 1-image calls drops slow images)."""
        return statistics.fmean(self.seconds_per_image)


# ----------------------------------------------------------------------------------------------- setup


def make_images(count: int, size: int, seed: int) -> Tensor:
    """Seeded smooth RGB images (blurred noise + 3 bright blobs), ImageNet-normalised: (count, 3, size, size)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(2, size // 16), max(2, size // 16), generator=gen)
    base = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1) * 0.6 + 0.1
    grid = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    for _ in range(3):
        centre = torch.rand(count, 2, generator=gen) * 0.7 + 0.15
        radius = torch.rand(count, generator=gen) * 0.08 + 0.04
        colour = torch.rand(count, 3, generator=gen) * 0.5 + 0.5
        dist2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
        blob = torch.exp(-dist2 / (2 * radius[:, None, None] ** 2))
        base = base * (1 - blob[:, None]) + colour[:, :, None, None] * blob[:, None]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (base.clamp(0, 1) - mean) / std


def make_model(seed: int) -> nn.Module:
    """Untrained ResNet-18 (weights=None, never downloaded), seeded, in eval mode."""
    torch.manual_seed(seed)
    return resnet18(weights=None).eval()


def calibrate_top1(model: nn.Module, images: Tensor, target: float = TARGET_TOP1) -> tuple[float, float]:
    """Scale the final layer so the mean top-1 softmax probability on `images` is about `target`.

    Logits are linear in a common scale t of fc's weight and bias, and each image's top-1 probability of
    softmax(t·z) grows with t, so t is found by bisection on log t.

    Returns:
        (scale t, achieved mean top-1 probability, measured again through the scaled model).
    """
    with torch.no_grad():
        logits = model(images)

    def mean_top1(log_scale: float) -> float:
        return torch.softmax(logits * math.exp(log_scale), dim=1).amax(dim=1).mean().item()

    low, high = math.log(1e-6), math.log(1e6)
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if mean_top1(middle) < target else (low, middle)
    scale = math.exp((low + high) / 2)
    with torch.no_grad():
        model.fc.weight.mul_(scale)
        model.fc.bias.mul_(scale)
        achieved = torch.softmax(model(images), dim=1).amax(dim=1).mean().item()
    return scale, achieved
