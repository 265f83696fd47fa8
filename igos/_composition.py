"""Mask upsampling, image composition and the blur baselines (docs/igos.md §1, §5.2, §7)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def upsample(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """U(m): bilinear upsampling with corner alignment.

    Args:
        mask: (..., h, w) low-resolution mask.
        size: (H, W) target size.

    Returns:
        (..., H, W); the input itself when it already has that size.
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    lead = mask.shape[:-2]
    flat = mask.reshape(-1, 1, *mask.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=True)
    return out.reshape(*lead, *size)


def resize_map(saliency: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a saliency map (B, h, w) -> (B, *size): area average when shrinking, U when growing."""
    h, w = saliency.shape[-2:]
    if (h, w) == tuple(size):
        return saliency
    if size[0] <= h and size[1] <= w:
        return F.adaptive_avg_pool2d(saliency.unsqueeze(1), size).squeeze(1)
    return upsample(saliency, size)


def gaussian_kernel_1d(size: int, sigma: float, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian taps, shape (size,); the 2-D kernel is their outer product."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _reflect101_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of a reflect-101 padded axis (mirror without repeating the edge), any pad."""
    if n == 1:
        return torch.zeros(n + 2 * pad, dtype=torch.long, device=device)
    period = 2 * (n - 1)
    i = torch.arange(-pad, n + pad, device=device).remainder(period)
    return torch.where(i > n - 1, period - i, i)


def separable_blur(images: Tensor, taps: Tensor, *, border: str = "reflect101") -> Tensor:
    """Blur each channel with the separable kernel taps ⊗ taps.

    Args:
        images: (B, C, H, W).
        taps: (k,) 1-D kernel, k odd.
        border: "reflect101" (OpenCV's default border) or "zeros".

    Returns:
        (B, C, H, W).
    """
    channels, size = images.shape[1], len(taps)
    pad = size // 2
    taps = taps.to(dtype=images.dtype, device=images.device)
    out = images
    for axis in (-1, -2):
        shape = (channels, 1, 1, size) if axis == -1 else (channels, 1, size, 1)
        weight = taps.reshape(1, 1, *shape[2:]).expand(*shape)
        if border == "reflect101":
            index = _reflect101_index(out.shape[axis], pad, out.device)
            out = F.conv2d(out.index_select(axis, index), weight, groups=channels)
        elif border == "zeros":
            padding = (0, pad) if axis == -1 else (pad, 0)
            out = F.conv2d(out, weight, padding=padding, groups=channels)
        else:
            raise ValueError(f"unknown border {border!r}")
    return out


def gaussian_blur(images: Tensor, size: int, sigma: float, *, border: str = "reflect101") -> Tensor:
    """Separable Gaussian blur (size odd, sigma in pixels) of images (B, C, H, W) -> (B, C, H, W)."""
    return separable_blur(images, gaussian_kernel_1d(size, sigma, dtype=images.dtype, device=images.device),
                          border=border)


def heavy_blur_size(height: int, width: int) -> tuple[int, float]:
    """Kernel size and sigma (pixels) of the iGOS++ baseline blur for an input of this size.

    51×51/σ=50 at 224 px (the official setting), 151/150 from 500 px and 201/200 from 800 px
    (the official later version); below 224 px both scale with the longer side (at least 3 px).
    """
    side = max(height, width)
    if side >= 800:
        return 201, 200.0
    if side >= 500:
        return 151, 150.0
    if side >= 224:
        return 51, 50.0
    size = max(3, 2 * round(51 * side / 224 / 2) + 1)
    return size, 50.0 * size / 51


def blur_baseline(images: Tensor) -> Tensor:
    """The iGOS++ baseline B: a heavy Gaussian blur of the model-input tensor (B, C, H, W)."""
    size, sigma = heavy_blur_size(*images.shape[-2:])
    return gaussian_blur(images, size, sigma, border="reflect101")


def rise_kernel_taps(size: int = 11, sigma: float = 5.0, truncate: float = 4.0) -> Tensor:
    """1-D taps of the RISE insertion kernel, shape (size,), float64.

    RISE builds its kernel by Gaussian-smoothing a centred unit impulse on a size×size grid
    (radius ⌈truncate·σ⌉, half-sample-symmetric borders "d c b a | a b c d"), which makes it nearly
    flat: the 2-D kernel (outer product of these taps) has centre 0.0088, corner 0.0077, sum 1.
    """
    radius = math.ceil(truncate * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    gaussian = torch.exp(-0.5 * (offsets / sigma) ** 2)
    gaussian = gaussian / gaussian.sum()
    impulse = torch.zeros(size, dtype=torch.float64)
    impulse[size // 2] = 1.0
    period = 2 * size
    mirrored = torch.arange(-radius, size + radius).remainder(period)
    padded = impulse[torch.where(mirrored >= size, period - 1 - mirrored, mirrored)]
    return F.conv1d(padded.view(1, 1, -1), gaussian.flip(0).view(1, 1, -1)).flatten()


def rise_insertion_start(images: Tensor) -> Tensor:
    """RISE insertion start: the nearly flat 11×11 RISE kernel, zero padding, per channel. (B, C, H, W)."""
    return separable_blur(images, rise_kernel_taps(), border="zeros")


def steps_for(cells: int, steps: int | None, default_fraction: int = 50) -> tuple[int, int]:
    """Cells per step q and number of steps n for ranking `cells` cells.

    Default (steps=None) is the iGOS++ rule q = max(1, ⌊P/50⌋); otherwise q = ⌈P/steps⌉.
    """
    per_step = max(1, cells // default_fraction) if steps is None else max(1, math.ceil(cells / steps))
    return per_step, math.ceil(cells / per_step)
