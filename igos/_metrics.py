"""Insertion and deletion metrics (docs/igos.md §7): the iGOS++ protocol and the RISE protocol."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._composition import blur_baseline, rise_insertion_start, steps_for, upsample
from ._errors import IGOSError
from ._scoring import Precision, ScoredModel, ScoreKind, frozen, resolve_targets

PROTOCOLS = ("igos", "rise")


@dataclass
class CausalScores:
    """AUCs (B,) and curves (B, n+1) over the removed/inserted fraction x (n+1,) in [0, 1].

    Lower deletion and higher insertion are better. AUC is the trapezoid over the whole curve,
    0 % point included (the official metric's last-chunk bug is not reproduced).
    """

    insertion: Tensor
    deletion: Tensor
    insertion_curve: Tensor
    deletion_curve: Tensor
    fractions: Tensor
    protocol: str


def insertion_deletion(model: nn.Module, images: Tensor, saliency: Tensor, *, targets: object = None,
                       protocol: str = "igos", baseline: Tensor | None = None, steps: int | None = None,
                       score: ScoreKind = "softmax", batch_size: int = 64, precision: Precision = "fp32",
                       channels_last: bool = False) -> CausalScores:
    """Insertion and deletion AUCs of saliency maps.

    Args:
        model: classifier (n, C, H, W) -> logits (n, K).
        images: (B, C, H, W) model inputs.
        saliency: (B, h, w), higher = more important (an Explanation's `saliency`).
        targets: class per image or None (top-1).
        protocol: "igos" ranks the h×w cells, removes ⌊P/50⌋ per step (or ⌈P/steps⌉) and
            composes with the soft upsampled keep-mask over the heavy blur (or `baseline`) for both
            curves; "rise" ranks input pixels, 224 steps by default, deletes to zeros and inserts
            onto an 11×11/σ=5 zero-padded blur.
        steps: number of steps, default per protocol.
        score: the target score, "softmax" by default.
        batch_size: most images per forward pass.
        precision, channels_last: how the model is called, as in `explain` ("fp32" by default: keep it
            when comparing maps made in different precisions).

    Returns:
        CausalScores.
    """
    if protocol not in PROTOCOLS:
        raise IGOSError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if saliency.ndim != 3 or saliency.shape[0] != images.shape[0]:
        raise IGOSError(f"saliency must be (B, h, w) for {images.shape[0]} images, got {tuple(saliency.shape)}")
    if protocol == "rise" and baseline is not None:
        raise IGOSError("the RISE protocol fixes its own baselines (zeros, mild blur); do not pass baseline")
    scorer = ScoredModel(model, score, batch_size, precision, channels_last)
    with frozen(model):
        chosen, _ = resolve_targets(scorer, images, targets)
        if protocol == "igos":
            base = blur_baseline(images) if baseline is None else baseline.expand_as(images).to(images)
            deletion_start, insertion_start, ranked = base, base, saliency
        else:
            deletion_start, insertion_start = torch.zeros_like(images), rise_insertion_start(images)
            ranked = upsample(saliency, tuple(images.shape[-2:]))
        cells = ranked.shape[-2] * ranked.shape[-1]
        per_step, n_steps = steps_for(cells, steps if steps is not None or protocol == "igos" else 224)
        removed = torch.clamp(torch.arange(n_steps + 1, device=images.device) * per_step, max=cells)
        grid = tuple(ranked.shape[-2:])
        deletion = _curve(scorer, images, deletion_start, _rank(ranked), grid, removed, chosen)
        insertion = _curve(scorer, insertion_start, images, _rank(ranked), grid, removed, chosen)
    fractions = removed.to(deletion.dtype) / cells if protocol == "igos" else torch.linspace(
        0, 1, n_steps + 1, device=images.device, dtype=deletion.dtype)
    return CausalScores(torch.trapezoid(insertion, fractions), torch.trapezoid(deletion, fractions), insertion,
                        deletion, fractions, protocol)


def _rank(saliency: Tensor) -> Tensor:
    """Rank of each cell, 0 = most salient; ties broken by flat index (stable sort). (B, h, w) -> (B, h·w)."""
    order = torch.sort(-saliency.flatten(1), dim=1, stable=True).indices
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return rank.scatter(1, order, positions)


def _curve(scorer: ScoredModel, start: Tensor, end: Tensor, rank: Tensor, grid: tuple[int, int],
           removed: Tensor, targets: Tensor) -> Tensor:
    """Scores (B, n+1) as the `removed[j]` top-ranked cells of the (h, w) grid switch from `start` to `end`.

    The binary keep-grid is upsampled with U (identity at input resolution), so cell borders are
    soft when h < H. Deletion: start = I, end = baseline; insertion: start = baseline, end = I.
    """
    batch, points = len(start), len(removed)

    def inputs(rows: Tensor) -> Tensor:
        image, step = rows // points, rows % points
        keep = (rank[image] >= removed[step, None]).to(start.dtype).view(len(rows), *grid)
        weight = upsample(keep, tuple(start.shape[-2:])).unsqueeze(1)
        return end[image] + (start[image] - end[image]) * weight

    scores = scorer.scores_of_rows(batch * points, inputs, targets.repeat_interleave(points))
    return scores.view(batch, points)
