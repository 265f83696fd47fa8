"""The I-GOS family: iGOS++, iGOS+, I-GOS and the insertion-only ablation (docs/igos.md §2–§4, §6, §9).

One optimiser serves every variant; a variant only says which masks exist, which network terms
the objective has, how the direction weights them, and which regulariser acts on the product mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._errors import NonFiniteError
from ._options import IGOSOptions
from ._paths import PathProblem, Term
from ._regularizers import btv, btv_weights, l1, tv


@dataclass(frozen=True)
class Variant:
    """An objective of the family.

    Attributes:
        n_masks: masks per image (1, or 2 for m_d and m_i).
        terms: network terms of L.
        direction_scale: weight of the network terms in the descent direction (½ for iGOS++, docs/igos.md §3).
        regularizer: "btv" or "tv", on the product of the masks.
    """

    n_masks: int
    terms: tuple[Term, ...]
    direction_scale: float
    regularizer: str


VARIANTS: dict[str, Variant] = {
    "igos++": Variant(2, (Term("deletion", (0, 1), 1.0), Term("insertion", (0, 1), -1.0),
                          Term("deletion", (0,), 1.0), Term("insertion", (1,), -1.0)), 0.5, "btv"),
    "igos+": Variant(1, (Term("deletion", (0,), 1.0), Term("insertion", (0,), -1.0)), 1.0, "btv"),
    "igos": Variant(1, (Term("deletion", (0,), 1.0),), 1.0, "tv"),
    "igos-insertion": Variant(1, (Term("insertion", (0,), -1.0),), 1.0, "tv"),
}


@dataclass
class Regularizer:
    """R(m) = λ1·L1(m) + λ2·(BTV(I, m) | TV(m) | 0) on the product mask m (n, h, w)."""

    kind: str
    l1_coeff: float
    tv_coeff: float
    beta: float
    weights: tuple[Tensor, Tensor] | None

    def __call__(self, masks: Tensor, image_rows: Tensor) -> Tensor:
        """masks (n, P, h, w), image_rows (n,) -> (n,)."""
        product = masks.prod(dim=1)
        value = self.l1_coeff * l1(product)
        if self.kind == "btv":
            w_v, w_h = self.weights
            value = value + self.tv_coeff * btv(product, (w_v[image_rows], w_h[image_rows]), self.beta)
        elif self.kind == "tv":
            value = value + self.tv_coeff * tv(product, self.beta)
        return value


@dataclass
class MaskResult:
    """masks (B, P, h, w) in [0, 1] (low = important); history (K, B) tensors, NaN after an early stop."""

    masks: Tensor
    loss: Tensor
    step: Tensor


def build_regularizer(images: Tensor, options: IGOSOptions) -> Regularizer:
    weights = (btv_weights(images, options.btv_sigma, symmetric=options.symmetric_btv)
               if options.regularizer == "btv" else None)
    return Regularizer(options.regularizer, options.l1_coeff, options.tv_coeff, options.btv_beta, weights)


def optimize_masks(problem: PathProblem, variant: Variant, options: IGOSOptions, mask_size: tuple[int, int],
                   generators: list[torch.Generator]) -> MaskResult:
    """Projected descent on the masks with a backtracking line search (docs/igos.md §4), per image.

    Args:
        problem: images, baselines, targets and path settings (B images).
        variant: the objective.
        options: resolved options (no None levers).
        mask_size: (h, w).
        generators: one per image; every random draw of image b comes from generators[b].
    """
    images = problem.images
    batch = len(images)
    regularizer = build_regularizer(images, options)
    masks = torch.ones(batch, variant.n_masks, *mask_size, device=images.device, dtype=images.dtype)
    direction_weights = problem.signs * variant.direction_scale
    running = torch.ones(batch, dtype=torch.bool, device=images.device)
    previous_step = torch.full((batch,), options.init_step, device=images.device, dtype=images.dtype)
    quiet_streak = torch.zeros(batch, dtype=torch.long, device=images.device)
    history_loss = torch.full((options.iterations, batch), float("nan"), device=images.device, dtype=images.dtype)
    history_step = history_loss.clone()

    def objective(rows: Tensor, candidate: Tensor, noise: Tensor | None) -> Tensor:
        """L (no ½) of candidate masks (n, P, h, w) for image rows (n,)."""
        with torch.no_grad():
            network = (problem.scores(rows, candidate, noise) * problem.signs).sum(dim=1)
            return network + regularizer(candidate, rows)

    for iteration in range(options.iterations):
        rows = running.nonzero().flatten()
        if rows.numel() == 0:
            break
        current = masks[rows]
        noise = problem.draw_noise(rows, generators)
        leaf = current.clone().requires_grad_(True)
        path_scores = problem.scores(rows, leaf, noise, grad_weights=direction_weights)
        reg = regularizer(leaf, rows)
        reg.sum().backward()
        direction = leaf.grad
        if options.reuse_base_loss:
            base = (path_scores * problem.signs).sum(dim=1) + reg.detach()
        else:
            base = objective(rows, current, noise if options.common_noise else problem.draw_noise(rows, generators))
        _check_finite(direction, base, rows)

        if options.line_search:
            start = previous_step[rows]
            if options.warm_start:
                start = torch.clamp(start / options.step_shrink, max=options.init_step)
            else:
                start = torch.full_like(start, options.init_step)
            evaluate = _trial_objective(objective, rows, noise if options.common_noise else None,
                                        lambda image_rows: problem.draw_noise(image_rows, generators))
            step = backtracking_line_search(evaluate, current, direction, base, start, options)
        else:
            step = torch.full((len(rows),), options.fixed_step, device=images.device, dtype=images.dtype)

        updated = (current - step[:, None, None, None] * direction).clamp(0, 1)
        masks = masks.index_copy(0, rows, updated)
        previous_step = previous_step.index_copy(0, rows, step)
        history_loss[iteration, rows] = base
        history_step[iteration, rows] = step
        if options.early_stop:
            change = (updated - current).abs().flatten(1).amax(dim=1)
            quiet = (change < options.early_stop_tol) | (step < options.min_step)
            streak = torch.where(quiet, quiet_streak[rows] + 1, 0)
            quiet_streak = quiet_streak.index_copy(0, rows, streak)
            running = running.index_copy(0, rows, streak < options.early_stop_patience)
    return MaskResult(masks.detach(), history_loss, history_step)


def _trial_objective(objective: Callable[[Tensor, Tensor, Tensor | None], Tensor], rows: Tensor,
                     common_noise: Tensor | None, fresh_noise: Callable[[Tensor], Tensor | None]
                     ) -> Callable[[Tensor, Tensor], Tensor]:
    """L of line-search candidates: the iteration's noise (common random numbers) or fresh draws."""

    def evaluate(local: Tensor, candidate: Tensor) -> Tensor:
        noise = common_noise[local] if common_noise is not None else fresh_noise(rows[local])
        return objective(rows[local], candidate, noise)

    return evaluate


def backtracking_line_search(evaluate: Callable[[Tensor, Tensor], Tensor], masks: Tensor, direction: Tensor,
                             base: Tensor, start: Tensor, options: IGOSOptions) -> Tensor:
    """Revised Armijo backtracking (docs/igos.md §4.1), one step per image.

    Trial α is accepted when L(clamp(m − α·g)) ≤ L0 − c·α·‖g‖²; the first trial below
    `min_step` is accepted regardless; otherwise α shrinks by `step_shrink`. With
    `parallel_trials` = k, k consecutive trials of an image are evaluated in one batch and the
    first (largest) that would stop the sequential search is taken.

    Args:
        evaluate: (local indices (r,), candidate masks (r, P, h, w)) -> L (r,).
        masks: (n, P, h, w) current masks; direction: (n, P, h, w) g.
        base: (n,) L0; start: (n,) first trial step.

    Returns:
        (n,) accepted steps.
    """
    trials_per_round = options.parallel_trials
    decay = options.step_shrink ** torch.arange(trials_per_round, device=masks.device, dtype=masks.dtype)
    squared_norm = direction.pow(2).flatten(1).sum(dim=1)
    accepted = torch.empty_like(base)
    next_trial = start.clone()
    pending = torch.arange(len(masks), device=masks.device)
    while pending.numel():
        trials = next_trial[pending, None] * decay  # (p, k)
        candidate = (masks[pending, None] - trials[..., None, None, None] * direction[pending, None]).clamp(0, 1)
        local = pending.repeat_interleave(trials_per_round)
        values = evaluate(local, candidate.flatten(0, 1)).view(-1, trials_per_round)
        passed = values <= base[pending, None] - options.armijo_c * trials * squared_norm[pending, None]
        stops = passed | (trials < options.min_step)
        done = stops.any(dim=1)
        first = stops.float().argmax(dim=1)
        accepted[pending[done]] = trials[done, first[done]]
        next_trial[pending] = trials[:, -1] * options.step_shrink
        pending = pending[~done]
    return accepted


def _check_finite(direction: Tensor, base: Tensor, rows: Tensor) -> None:
    bad = ~(torch.isfinite(direction).flatten(1).all(dim=1) & torch.isfinite(base))
    if bad.any():
        raise NonFiniteError(f"images {rows[bad].tolist()}: the iGOS objective or its gradient is not finite")
