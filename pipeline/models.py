"""Classifier architectures: torchvision models built with `weights=None` and a small CNN for CPU runs.

No weights are ever downloaded: every model starts from random initialisation (or a local checkpoint
the caller loads).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

ARCHITECTURES = ("small_cnn", "resnet18", "resnet50", "densenet121")


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool stages (16, 32, 64 channels), global average pooling, linear head.

    Input (B, C, H, W) of any size; output logits (B, num_classes).
    """

    def __init__(self, num_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in (16, 32, 64):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(architecture: str, num_classes: int, in_channels: int = 1) -> nn.Module:
    """A randomly initialised classifier with an `in_channels` stem (1 for radiographs)."""
    if architecture == "small_cnn":
        return SmallCNN(num_classes, in_channels)
    if architecture in ("resnet18", "resnet50"):
        model = getattr(models, architecture)(weights=None, num_classes=num_classes)
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        return model
    if architecture == "densenet121":
        model = models.densenet121(weights=None, num_classes=num_classes)
        model.features.conv0 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        return model
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")
