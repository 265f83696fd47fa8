"""Mask regularisers: L1, total variation and bilateral total variation (docs/igos.md §2.3, §2.4)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._composition import upsample


def _mean_or_zero(values: Tensor) -> Tensor:
    """Mean over the last two axes; 0 when there are no pairs (a mask one cell high or wide)."""
    if values.shape[-1] == 0 or values.shape[-2] == 0:
        return values.new_zeros(values.shape[:-2])
    return values.mean(dim=(-2, -1))


def l1(mask: Tensor) -> Tensor:
    """L1(m) = mean |1 - m| over cells. mask: (B, h, w) -> (B,)."""
    return (1 - mask).abs().mean(dim=(-2, -1))


def tv(mask: Tensor, beta: float = 2.0) -> Tensor:
    """TV_v + TV_h on the mask grid, each a mean of |difference|^beta. mask: (B, h, w) -> (B,)."""
    vertical = (mask[:, 1:, :] - mask[:, :-1, :]).abs().pow(beta)
    horizontal = (mask[:, :, 1:] - mask[:, :, :-1]).abs().pow(beta)
    return _mean_or_zero(vertical) + _mean_or_zero(horizontal)


def btv_weights(image: Tensor, sigma: float = 0.01, *, symmetric: bool = False) -> tuple[Tensor, Tensor]:
    """Colour weights of the bilateral term, computed once per image (constants).

    Args:
        image: (B, C, H, W) normalised model input.
        sigma: kernel width in squared model-input units, applied as exp(-Δ²/σ).
        symmetric: False reproduces the official asymmetry (vertical weight from the channel-mean
            difference); True averages per-channel Gaussians in both directions. Equal for C = 1.

    Returns:
        w_v: (B, H-1, W) and w_h: (B, H, W-1).
    """
    dv = image[:, :, 1:, :] - image[:, :, :-1, :]
    dh = image[:, :, :, 1:] - image[:, :, :, :-1]
    if symmetric:
        w_v = torch.exp(-dv.pow(2) / sigma).mean(dim=1)
    else:
        w_v = torch.exp(-dv.mean(dim=1).pow(2) / sigma)
    w_h = torch.exp(-dh.pow(2) / sigma).mean(dim=1)
    return w_v, w_h


def btv(mask: Tensor, weights: tuple[Tensor, Tensor], beta: float = 2.0) -> Tensor:
    """BTV(I, m) = ½ (TV_v + TV_h + BTV_v + BTV_h).

    Args:
        mask: (B, h, w) combined low-resolution mask.
        weights: (w_v, w_h) from `btv_weights`, which fix the input size H×W.

    Returns:
        (B,).
    """
    w_v, w_h = weights
    size = (w_h.shape[-2], w_v.shape[-1])
    full = upsample(mask, size)
    bilateral_v = w_v * (full[:, 1:, :] - full[:, :-1, :]).abs().pow(beta)
    bilateral_h = w_h * (full[:, :, 1:] - full[:, :, :-1]).abs().pow(beta)
    return 0.5 * (tv(mask, beta) + _mean_or_zero(bilateral_v) + _mean_or_zero(bilateral_h))
