"""Gradient-based baselines: plain gradient, pixel integrated gradients and Grad-CAM."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ._errors import IGOSError
from ._scoring import ScoredModel


def _input_gradients(scorer: ScoredModel, rows: int, make_inputs: Callable[[Tensor], Tensor],
                     targets: Tensor) -> Tensor:
    """∂f_c/∂x for `rows` inputs built chunk by chunk: returns (rows, C, H, W)."""
    out = []
    for start in range(0, rows, scorer.batch_size):
        index = torch.arange(start, min(rows, start + scorer.batch_size), device=targets.device)
        inputs = make_inputs(index).detach().requires_grad_(True)
        scorer.target_scores(inputs, targets[index], backward=True).sum().backward()
        out.append(inputs.grad)
    return torch.cat(out)


def gradient_saliency(scorer: ScoredModel, images: Tensor, targets: Tensor) -> Tensor:
    """Simonyan et al.: |∂f_c/∂x| maximised over channels. images (B, C, H, W) -> (B, H, W)."""
    grads = _input_gradients(scorer, len(images), lambda i: images[i], targets)
    return grads.abs().amax(dim=1)


def integrated_gradients_saliency(scorer: ScoredModel, images: Tensor, baselines: Tensor, targets: Tensor,
                                  ig_steps: int) -> Tensor:
    """Sundararajan et al.: |Σ_ch (I − B) ⊙ (1/N) Σ_k ∇f_c(B + α_k (I − B))|, α_k = k/N.

    images, baselines: (B, C, H, W) -> (B, H, W).
    """
    batch = len(images)
    alphas = torch.arange(1, ig_steps + 1, device=images.device, dtype=images.dtype) / ig_steps
    difference = images - baselines

    def path_inputs(rows: Tensor) -> Tensor:
        image, step = rows // ig_steps, rows % ig_steps
        return baselines[image] + alphas[step, None, None, None] * difference[image]

    grads = _input_gradients(scorer, batch * ig_steps, path_inputs, targets.repeat_interleave(ig_steps))
    mean_grad = grads.view(batch, ig_steps, *images.shape[1:]).mean(dim=1)
    return (difference * mean_grad).sum(dim=1).abs()


def last_conv_layer(model: nn.Module) -> nn.Module:
    """The last nn.Conv2d registered in the model (Grad-CAM's default layer)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise IGOSError("gradcam needs target_layer=<module>: the model has no nn.Conv2d to default to")
    return convs[-1]


def gradcam_saliency(scorer: ScoredModel, images: Tensor, targets: Tensor, layer: nn.Module) -> Tensor:
    """Selvaraju et al.: ReLU(Σ_k mean(∂f_c/∂A_k) · A_k) at the layer's resolution: (B, h', w')."""
    captured: list[Tensor] = []

    def keep_activation(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        output.retain_grad()
        captured.append(output)

    maps = []
    handle = layer.register_forward_hook(keep_activation)
    try:
        for start in range(0, len(images), scorer.batch_size):
            chunk = images[start : start + scorer.batch_size].detach().requires_grad_(True)
            captured.clear()
            scorer.target_scores(chunk, targets[start : start + len(chunk)], backward=True).sum().backward()
            if len(captured) != 1 or captured[0].ndim != 4:
                raise IGOSError("gradcam's target_layer must run once per forward and output (n, K, h, w)")
            # in the chunk's dtype: under precision="bf16" the layer's output and gradient are bfloat16
            activation = captured[0].detach().to(chunk.dtype)
            weights = captured[0].grad.to(chunk.dtype).mean(dim=(2, 3), keepdim=True)
            maps.append(torch.relu((weights * activation).sum(dim=1)).detach())
    finally:
        handle.remove()
    return torch.cat(maps)
