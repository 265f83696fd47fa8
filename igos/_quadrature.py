"""Quadrature rules for the path integral of integrated gradients (docs/igos.md §3.1).

The path average (1/N) Σ_k f(α_k·u) with α_k = k/N is the right Riemann sum of ∫₀¹ f(α·u) dα. A
Gauss–Legendre rule with n nodes integrates polynomials of degree 2n − 1 exactly, so for a smooth integrand a
few nodes reach the integral that the Riemann sum approaches only as 1/N.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

Quadrature = Literal["riemann", "gauss-legendre"]
QUADRATURES: tuple[str, ...] = ("riemann", "gauss-legendre")


def path_nodes(rule: Quadrature, nodes: int, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Positions α (nodes,) in (0, 1] and weights w (nodes,) summing to 1, so that ∫₀¹ f ≈ Σ_k w_k f(α_k).

    riemann: α_k = k/N, w_k = 1/N (the published method's steps). gauss-legendre: the Legendre nodes and weights
    mapped from [−1, 1] to [0, 1], in increasing order.
    """
    if nodes < 1:
        raise ValueError(f"a quadrature needs at least one node, got {nodes}")
    if rule == "riemann":
        alphas = np.arange(1, nodes + 1) / nodes
        weights = np.full(nodes, 1.0 / nodes)
    elif rule == "gauss-legendre":
        points, raw = np.polynomial.legendre.leggauss(nodes)
        alphas, weights = (points + 1) / 2, raw / 2
    else:
        raise ValueError(f"unknown quadrature {rule!r}; choose one of {QUADRATURES}")
    return (torch.as_tensor(alphas, device=device, dtype=dtype), torch.as_tensor(weights, device=device, dtype=dtype))
