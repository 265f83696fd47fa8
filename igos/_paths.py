"""Path-averaged scores S_del / S_ins and their integrated gradients on the masks (docs/igos.md §2.1, §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ._composition import upsample
from ._quadrature import Quadrature, path_nodes
from ._scoring import ScoredModel

View = Literal["deletion", "insertion"]


@dataclass(frozen=True)
class Term:
    """One network term of an objective: sign · S_view(Π_{j in masks} U(m_j))."""

    view: View
    masks: tuple[int, ...]
    sign: float


@dataclass
class PathProblem:
    """What stays fixed while one batch of images is explained.

    Attributes:
        scorer: the model as target-score function.
        images: (B, C, H, W) model inputs I.
        baselines: (B, C, H, W) baselines B.
        targets: (B,) target class per image.
        terms: the objective's network terms.
        n_masks: number of masks P per image.
        ig_steps: N, the nodes of the path quadrature.
        noise_std: std of the additive Gaussian noise ε (model-input units); 0 for none.
        quadrature: "riemann" (α_k = k/N, weights 1/N: the published method) or "gauss-legendre"
            (docs/igos.md §3.1).
    """

    scorer: ScoredModel
    images: Tensor
    baselines: Tensor
    targets: Tensor
    terms: tuple[Term, ...]
    n_masks: int
    ig_steps: int
    noise_std: float
    quadrature: Quadrature = "riemann"

    def __post_init__(self) -> None:
        device, dtype = self.images.device, self.images.dtype
        self.alphas, self.node_weights = path_nodes(self.quadrature, self.ig_steps, device, dtype)
        self.selects = torch.tensor([[j in t.masks for j in range(self.n_masks)] for t in self.terms],
                                    device=device)
        self.is_deletion = torch.tensor([t.view == "deletion" for t in self.terms], device=device)
        self.signs = torch.tensor([t.sign for t in self.terms], device=device, dtype=dtype)
        self.rows_per_image = len(self.terms) * self.ig_steps

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    def draw_noise(self, image_rows: Tensor, generators: list[torch.Generator]) -> Tensor | None:
        """Fresh noise for every path image of the given images, each from its image's generator.

        Args:
            image_rows: (n,) image indices (repeats allowed; drawn in row order).
            generators: one generator per image of the batch.

        Returns:
            (n, T·N, C, H, W), or None when noise_std is 0.
        """
        if self.noise_std == 0:
            return None
        shape = (self.rows_per_image, *self.images.shape[1:])
        draws = [torch.randn(shape, generator=generators[i], device=self.images.device, dtype=self.images.dtype)
                 for i in image_rows.tolist()]
        return torch.stack(draws) * self.noise_std

    def scores(self, image_rows: Tensor, masks: Tensor, noise: Tensor | None,
               grad_weights: Tensor | None = None) -> Tensor:
        """Path-averaged scores S_t = Σ_k w_k f(x_k) of every term for each row.

        Args:
            image_rows: (n,) image index of each row.
            masks: (n, P, h, w) masks of each row.
            noise: (n, T·N, C, H, W) or None.
            grad_weights: (T,) if given, Σ_rows Σ_t w_t S_t is backpropagated into `masks.grad`
                (chunk by chunk, so memory stays bounded by the scorer's batch size).

        Returns:
            (n, T) detached scores.
        """
        per_image = self.rows_per_image
        total = len(image_rows) * per_image
        flat_scores = torch.empty(total, device=self.images.device, dtype=self.images.dtype)
        backward = grad_weights is not None
        for start in range(0, total, self.scorer.batch_size):
            flat = torch.arange(start, min(total, start + self.scorer.batch_size), device=self.images.device)
            row, path = flat // per_image, flat % per_image
            term, step = path // self.ig_steps, path % self.ig_steps
            with torch.set_grad_enabled(backward):
                inputs = self._compose(image_rows[row], masks[row], term, step)
                if noise is not None:
                    inputs = inputs + noise[row, path]
                values = self.scorer.target_scores(inputs, self.targets[image_rows[row]], backward=backward)
                if backward:
                    (values * grad_weights[term] * self.node_weights[step]).sum().backward()
            flat_scores[flat] = values.detach()
        return (flat_scores.view(len(image_rows), len(self.terms), self.ig_steps) * self.node_weights).sum(dim=-1)

    def _compose(self, images: Tensor, masks: Tensor, term: Tensor, step: Tensor) -> Tensor:
        """Path images Φ(A, Z; α_k · Π U(m_j)) for chunk rows: (r,) indices, masks (r, P, h, w)."""
        full = upsample(masks, self.size)
        chosen = torch.where(self.selects[term][:, :, None, None], full, torch.ones_like(full)).prod(dim=1)
        scaled = (self.alphas[step][:, None, None] * chosen).unsqueeze(1)
        image, baseline = self.images[images], self.baselines[images]
        deletion = self.is_deletion[term][:, None, None, None]
        start = torch.where(deletion, baseline, image)
        end = torch.where(deletion, image, baseline)
        return start + (end - start) * scaled
