"""Perturbation baselines: RISE and meaningful perturbation ("Mask", Fong & Vedaldi 2017)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._options import MaskOptions, RiseOptions
from ._paths import PathProblem, Term
from ._regularizers import l1, tv
from ._scoring import ScoredModel


def rise_saliency(scorer: ScoredModel, images: Tensor, targets: Tensor, options: RiseOptions,
                  generators: list[torch.Generator]) -> Tensor:
    """RISE: Σ_i f_c(I ⊙ M_i) M_i / (n·p) over random smooth binary masks. (B, C, H, W) -> (B, H, W).

    Each mask is a `cell_grid`² Bernoulli(p) grid, upsampled bilinearly to (s+1)·cell and cropped
    at a random shift, as in Petsiuk et al. Masks are drawn per image from its generator.
    """
    batch, _, height, width = images.shape
    grid = options.cell_grid
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    saliency = images.new_zeros(batch, height, width)
    for b in range(batch):
        generator = generators[b]
        cells = (torch.rand(options.n_masks, 1, grid, grid, generator=generator, device=images.device,
                            dtype=images.dtype) < options.keep_prob).to(images.dtype)
        shifts = torch.stack([torch.randint(cell_h, (options.n_masks,), generator=generator, device=images.device),
                              torch.randint(cell_w, (options.n_masks,), generator=generator, device=images.device)],
                             dim=1)

        def smooth_masks(rows: Tensor, cells: Tensor = cells, shifts: Tensor = shifts) -> Tensor:
            big = F.interpolate(cells[rows], size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear",
                                align_corners=False)
            ys = shifts[rows, 0, None] + torch.arange(height, device=images.device)
            xs = shifts[rows, 1, None] + torch.arange(width, device=images.device)
            index = torch.arange(len(rows), device=images.device)[:, None, None]
            return big[:, 0][index, ys[:, :, None], xs[:, None, :]]

        for start in range(0, options.n_masks, scorer.batch_size):
            rows = torch.arange(start, min(options.n_masks, start + scorer.batch_size), device=images.device)
            masks = smooth_masks(rows)  # each chunk's masks are built once: scored, then accumulated
            with torch.no_grad():
                scores = scorer.target_scores(images[b : b + 1] * masks[:, None], targets[b].repeat(len(rows)))
            saliency[b] += torch.einsum("n,nhw->hw", scores, masks)
    return saliency / (options.n_masks * options.keep_prob)


def meaningful_perturbation_masks(scorer: ScoredModel, images: Tensor, baselines: Tensor, targets: Tensor,
                                  mask_size: tuple[int, int], options: MaskOptions) -> tuple[Tensor, Tensor]:
    """Fong & Vedaldi: minimise f_c(Φ(I, B; U(m))) + λ1·mean|1−m| + λ2·TV_β(m) with Adam, clamp to [0, 1].

    Returns:
        masks (B, 1, h, w), low = important, and the loss before each step (K, B).
    """
    problem = PathProblem(scorer, images, baselines, targets, (Term("deletion", (0,), 1.0),), n_masks=1,
                          ig_steps=1, noise_std=0.0)
    rows = torch.arange(len(images), device=images.device)
    masks = torch.ones(len(images), 1, *mask_size, device=images.device, dtype=images.dtype, requires_grad=True)
    optimizer = torch.optim.Adam([masks], lr=options.learning_rate)
    losses = images.new_empty(options.iterations, len(images))
    for iteration in range(options.iterations):
        optimizer.zero_grad()
        scores = problem.scores(rows, masks, None, grad_weights=problem.signs)[:, 0]
        product = masks[:, 0]
        regularizer = options.l1_coeff * l1(product) + options.tv_coeff * tv(product, options.tv_beta)
        regularizer.sum().backward()
        losses[iteration] = scores + regularizer.detach()
        optimizer.step()
        with torch.no_grad():
            masks.clamp_(0, 1)
    return masks.detach(), losses
