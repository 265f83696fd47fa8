"""A hand-set CNN whose target score depends only on the brightness of one known window."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The shared test setting: 32×32 images whose evidence is one 8×8 window, and cheap options per method.
SIZE = (32, 32)
WINDOW = (8, 16, 8, 8)
FAST = {"iterations": 5, "ig_steps": 4}
METHOD_OPTIONS = {
    "igos++": FAST, "igos+": FAST, "igos": FAST, "igos-insertion": FAST,
    "mask": {"iterations": 20}, "rise": {"n_masks": 64, "cell_grid": 4},
    "gradcam": {}, "integrated-gradients": {"ig_steps": 5}, "gradient": {},
}


class WindowEvidenceNet(nn.Module):
    """Logits (n, 2): class 0 is 0; class 1 is gain · (mean of channel-mean pixels in `window` − 0.5).

    A box-filter convolution with stride = kernel averages the input over a grid of windows; a fixed
    linear read-out picks the one at `window` = (top, left, height, width), which must lie on that
    grid. Everything outside it is ignored.
    """

    def __init__(self, size: tuple[int, int], window: tuple[int, int, int, int], channels: int = 1,
                 gain: float = 10.0) -> None:
        super().__init__()
        top, left, height, width = window
        if top % height or left % width:
            raise ValueError("the window must lie on the grid of its own size")
        self.conv = nn.Conv2d(channels, 1, (height, width), stride=(height, width), bias=False)
        nn.init.constant_(self.conv.weight, 1.0 / (channels * height * width))
        out_h, out_w = size[0] // height, size[1] // width
        readout = torch.zeros(2, out_h * out_w)
        readout[1, (top // height) * out_w + left // width] = gain
        self.readout = nn.Linear(out_h * out_w, 2)
        with torch.no_grad():
            self.readout.weight.copy_(readout)
            self.readout.bias.copy_(torch.tensor([0.0, -0.5 * gain]))

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.conv(x).flatten(1))


def evidence_images(count: int, size: tuple[int, int], window: tuple[int, int, int, int], channels: int = 1,
                    seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    """Dark noisy images (count, C, H, W) with a bright patch in `window` and an equally bright
    distractor patch of the same size elsewhere (mirrored position), which the model ignores."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 + 0.05 * torch.rand(count, channels, *size, generator=generator, dtype=dtype)
    top, left, height, width = window
    images[:, :, top : top + height, left : left + width] = 0.9
    d_top, d_left = size[0] - top - height, size[1] - left - width
    images[:, :, d_top : d_top + height, d_left : d_left + width] = 0.9
    return images


def window_mask(size: tuple[int, int], window: tuple[int, int, int, int]) -> Tensor:
    """Boolean (H, W), True inside the window."""
    top, left, height, width = window
    mask = torch.zeros(size, dtype=torch.bool)
    mask[top : top + height, left : left + width] = True
    return mask


def top_fraction_inside(saliency: Tensor, inside: Tensor, fraction: float = 0.05) -> Tensor:
    """Share of each map's top `fraction` pixels that fall inside `inside`. saliency (B, H, W) -> (B,)."""
    flat = saliency.flatten(1)
    count = max(1, round(fraction * flat.shape[1]))
    top = flat.topk(count, dim=1).indices
    return inside.flatten()[top].double().mean(dim=1)
