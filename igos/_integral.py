"""The path integral of the iGOS objective at given masks, on a chosen quadrature (docs/igos.md §3.1).

For checking a quadrature rule: the network part of L and of the descent direction, without noise, at masks
the caller chooses (e.g. the masks an explanation ended with).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._composition import blur_baseline
from ._errors import IGOSError
from ._igos import VARIANTS
from ._paths import PathProblem
from ._quadrature import Quadrature
from ._scoring import ScoredModel, ScoreKind, frozen, resolve_targets


def path_integral(model: nn.Module, images: Tensor, masks: Tensor, *, method: str = "igos++",
                  targets: Sequence[int] | Tensor | None = None, quadrature: Quadrature = "riemann", nodes: int = 15,
                  score: ScoreKind = "softmax", batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Path-averaged scores and the integrated gradient of an I-GOS-family objective, noise-free.

    Args:
        model: classifier (n, C, H, W) -> logits (n, K).
        images: (B, C, H, W) model inputs; the baseline is the heavy blur (docs/igos.md §5.2).
        masks: (B, P, h, w) in [0, 1], P masks of `method` (2 for iGOS++).
        quadrature, nodes: the rule and its node count (docs/igos.md §3.1).

    Returns:
        scores (B, T): S_t of each network term t; gradient (B, P, h, w): ∂/∂m of Σ_t sign_t·scale·S_t, the
        network part of the descent direction (docs/igos.md §3).
    """
    if method not in VARIANTS:
        raise IGOSError(f"path_integral needs an I-GOS-family method {sorted(VARIANTS)}, got {method!r}")
    variant = VARIANTS[method]
    if masks.dim() != 4 or masks.shape[:2] != (len(images), variant.n_masks):
        raise IGOSError(f"masks must be (B, {variant.n_masks}, h, w) for {len(images)} images, got "
                        f"{tuple(masks.shape)}")
    scorer = ScoredModel(model, score, batch_size)
    with frozen(model):
        chosen, _ = resolve_targets(scorer, images, targets)
        problem = PathProblem(scorer, images, blur_baseline(images), chosen, variant.terms, variant.n_masks, nodes,
                              0.0, quadrature)
        leaf = masks.detach().clone().requires_grad_(True)
        rows = torch.arange(len(images), device=images.device)
        scores = problem.scores(rows, leaf, None, grad_weights=problem.signs * variant.direction_scale)
    return scores, leaf.grad.detach()
