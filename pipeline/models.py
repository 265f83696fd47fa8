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
    """Four conv-BN-ReLU-pool stages (16, 32, 64, 64 channels), a 3×3 average-pooled map, dropout, linear head.

    The head sees a coarse 3×3 spatial map rather than one globally pooled vector: *where* an opacity
    lies (lung field vs heart, a corner with text) is what separates the classes, and a globally pooled
    CNN trained for a few epochs on CPU does not learn it. Input (B, C, H, W), H and W >= 16 (four
    halvings); output logits (B, num_classes).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in (16, 32, 64, 64):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(channels * 9, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(architecture: str, num_classes: int, in_channels: int = 1) -> nn.Module:
    """A randomly initialised classifier with an `in_channels` stem (1 for radiographs).

    small_cnn: for CPU runs on small images (synthetic data, 64–128 px). resnet18 (the default for real
    data), resnet50, densenet121: torchvision models with `weights=None` and the first convolution
    replaced by an `in_channels` one.
    """
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
