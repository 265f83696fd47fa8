"""Slow, obvious reference implementations of the iGOS++ mathematics of docs/igos.md, in float64.

Written from those equations only (not from the `igos` library): plain loops over pixels,
pairs, path steps and ranking steps. Arrays are numpy float64 unless a model is involved; the
model is only ever called on single images, and autograd is used only for ∇_x f_c(x) of one image.

Conventions: an image is (C, H, W), a mask (h, w); masks are low = salient (docs/igos.md §1); saliency maps
given to the metric references are high = salient (the library's convention for `insertion_deletion`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

# ----------------------------------------------------------------------------------------------
# A tiny classifier for the tests (float64).
# ----------------------------------------------------------------------------------------------


class TinyNet(nn.Module):
    """conv 3×3 → tanh → 2×2 average pool → linear; smooth, so gradients are well defined everywhere."""

    def __init__(self, channels: int, classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.linear = nn.Linear(16, classes)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.8)
        self.double()
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(torch.tanh(self.conv(x))).flatten(1))


# ----------------------------------------------------------------------------------------------
# U: bilinear upsampling with align_corners=True as an explicit weight matrix (docs/igos.md §1).
# ----------------------------------------------------------------------------------------------


def axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) 1-D linear interpolation weights with corner alignment.

    Output sample o sits at source coordinate o·(n_in − 1)/(n_out − 1) (0 when n_out = 1), so the
    first and last samples coincide with the first and last source cells.
    """
    weights = np.zeros((n_out, n_in))
    for o in range(n_out):
        source = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        low = min(math.floor(source), n_in - 1)
        high = min(low + 1, n_in - 1)
        frac = source - low
        weights[o, low] += 1.0 - frac
        weights[o, high] += frac
    return weights


@functools.cache
def upsample_matrix(h: int, w: int, out_h: int, out_w: int) -> np.ndarray:
    """(H·W, h·w) matrix of U: u.ravel() = U @ m.ravel(). Its transpose is Uᵀ. Cached: do not modify."""
    H, W = out_h, out_w
    wy, wx = axis_weights(h, H), axis_weights(w, W)
    matrix = np.zeros((H * W, h * w))
    for Y in range(H):
        for X in range(W):
            for y in range(h):
                if wy[Y, y] == 0.0:
                    continue
                for x in range(w):
                    matrix[Y * W + X, y * w + x] = wy[Y, y] * wx[X, x]
    return matrix


def upsample(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """U(m): (h, w) -> (H, W)."""
    h, w = mask.shape
    return (upsample_matrix(h, w, *size) @ mask.ravel()).reshape(size)


def upsample_adjoint(grad: np.ndarray, mask_size: tuple[int, int]) -> np.ndarray:
    """Uᵀ g: (H, W) -> (h, w)."""
    H, W = grad.shape
    return (upsample_matrix(*mask_size, H, W).T @ grad.ravel()).reshape(mask_size)


# ----------------------------------------------------------------------------------------------
# Regularisers (docs/igos.md §2.3, §2.4, §6) and their gradients, by loops.
# ----------------------------------------------------------------------------------------------


def l1(mask: np.ndarray) -> float:
    """L1(m) = (1/P) Σ_p |1 − m_p|."""
    h, w = mask.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            total += abs(1.0 - mask[i, j])
    return total / (h * w)


def l1_grad(mask: np.ndarray) -> np.ndarray:
    """∂L1/∂m away from the kink m = 1 (there the subgradient 0 is used)."""
    h, w = mask.shape
    grad = np.zeros_like(mask)
    for i in range(h):
        for j in range(w):
            grad[i, j] = -np.sign(1.0 - mask[i, j]) / (h * w)
    return grad


def _power(d: float, beta: float) -> float:
    return abs(d) ** beta


def _power_grad(d: float, beta: float) -> float:
    """d/dd |d|^β."""
    return beta * abs(d) ** (beta - 1) * np.sign(d) if d != 0 else 0.0


def tv_parts(mask: np.ndarray, beta: float = 2.0) -> tuple[float, float]:
    """(TV_v, TV_h): means of |m[i,j] − m[i+1,j]|^β and |m[i,j] − m[i,j+1]|^β (0 without pairs)."""
    h, w = mask.shape
    vertical = [_power(mask[i, j] - mask[i + 1, j], beta) for i in range(h - 1) for j in range(w)]
    horizontal = [_power(mask[i, j] - mask[i, j + 1], beta) for i in range(h) for j in range(w - 1)]
    return (sum(vertical) / len(vertical) if vertical else 0.0,
            sum(horizontal) / len(horizontal) if horizontal else 0.0)


def tv(mask: np.ndarray, beta: float = 2.0) -> float:
    """TV(m) = TV_v + TV_h (I-GOS, docs/igos.md §6: no ½, no bilateral part)."""
    return sum(tv_parts(mask, beta))


def tv_grad(mask: np.ndarray, beta: float = 2.0) -> np.ndarray:
    h, w = mask.shape
    grad = np.zeros_like(mask)
    n_v, n_h = (h - 1) * w, h * (w - 1)
    for i in range(h - 1):
        for j in range(w):
            g = _power_grad(mask[i, j] - mask[i + 1, j], beta) / n_v
            grad[i, j] += g
            grad[i + 1, j] -= g
    for i in range(h):
        for j in range(w - 1):
            g = _power_grad(mask[i, j] - mask[i, j + 1], beta) / n_h
            grad[i, j] += g
            grad[i, j + 1] -= g
    return grad


def btv_weights(image: np.ndarray, sigma: float = 0.01, symmetric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Colour weights w_v (H−1, W), w_h (H, W−1) of docs/igos.md §2.4.

    Official (symmetric=False): w_v = exp(−((1/C) Σ_ch ΔI)²/σ); w_h = (1/C) Σ_ch exp(−ΔI²/σ).
    Symmetric: both directions average the per-channel Gaussians.
    """
    C, H, W = image.shape
    w_v = np.zeros((H - 1, W))
    w_h = np.zeros((H, W - 1))
    for y in range(H - 1):
        for x in range(W):
            diffs = [image[ch, y, x] - image[ch, y + 1, x] for ch in range(C)]
            if symmetric:
                w_v[y, x] = sum(math.exp(-d * d / sigma) for d in diffs) / C
            else:
                mean = sum(diffs) / C
                w_v[y, x] = math.exp(-mean * mean / sigma)
    for y in range(H):
        for x in range(W - 1):
            diffs = [image[ch, y, x] - image[ch, y, x + 1] for ch in range(C)]
            w_h[y, x] = sum(math.exp(-d * d / sigma) for d in diffs) / C
    return w_v, w_h


def btv(image: np.ndarray, mask: np.ndarray, sigma: float = 0.01, beta: float = 2.0,
        symmetric: bool = False) -> float:
    """BTV(I, m) = ½ (TV_v + TV_h + BTV_v + BTV_h), the bilateral part on u = U(m) at input size."""
    _, H, W = image.shape
    w_v, w_h = btv_weights(image, sigma, symmetric)
    u = upsample(mask, (H, W))
    bilateral_v = [w_v[y, x] * _power(u[y, x] - u[y + 1, x], beta) for y in range(H - 1) for x in range(W)]
    bilateral_h = [w_h[y, x] * _power(u[y, x] - u[y, x + 1], beta) for y in range(H) for x in range(W - 1)]
    tv_v, tv_h = tv_parts(mask, beta)
    bv = sum(bilateral_v) / len(bilateral_v) if bilateral_v else 0.0
    bh = sum(bilateral_h) / len(bilateral_h) if bilateral_h else 0.0
    return 0.5 * (tv_v + tv_h + bv + bh)


def btv_grad(image: np.ndarray, mask: np.ndarray, sigma: float = 0.01, beta: float = 2.0,
             symmetric: bool = False) -> np.ndarray:
    """∂BTV/∂m: ½ (∇TV + Uᵀ ∂(BTV_v + BTV_h)/∂u); the colour weights are constants."""
    _, H, W = image.shape
    w_v, w_h = btv_weights(image, sigma, symmetric)
    u = upsample(mask, (H, W))
    du = np.zeros((H, W))
    n_v, n_h = (H - 1) * W, H * (W - 1)
    for y in range(H - 1):
        for x in range(W):
            g = w_v[y, x] * _power_grad(u[y, x] - u[y + 1, x], beta) / n_v
            du[y, x] += g
            du[y + 1, x] -= g
    for y in range(H):
        for x in range(W - 1):
            g = w_h[y, x] * _power_grad(u[y, x] - u[y, x + 1], beta) / n_h
            du[y, x] += g
            du[y, x + 1] -= g
    return 0.5 * (tv_grad(mask, beta) + upsample_adjoint(du, mask.shape))


def regularizer(kind: str, image: np.ndarray, mask: np.ndarray, l1_coeff: float, tv_coeff: float,
                sigma: float = 0.01, beta: float = 2.0, symmetric: bool = False) -> float:
    """R(m) = λ1·L1(m) + λ2·(BTV(I, m) | TV(m))."""
    smooth = btv(image, mask, sigma, beta, symmetric) if kind == "btv" else tv(mask, beta)
    return l1_coeff * l1(mask) + tv_coeff * smooth


def regularizer_grad(kind: str, image: np.ndarray, mask: np.ndarray, l1_coeff: float, tv_coeff: float,
                     sigma: float = 0.01, beta: float = 2.0, symmetric: bool = False) -> np.ndarray:
    smooth = btv_grad(image, mask, sigma, beta, symmetric) if kind == "btv" else tv_grad(mask, beta)
    return l1_coeff * l1_grad(mask) + tv_coeff * smooth


# ----------------------------------------------------------------------------------------------
# Gaussian blur (docs/igos.md §5.2, §7.3).
# ----------------------------------------------------------------------------------------------


def gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """Sampled 1-D Gaussian, centred, normalised to sum 1. The 2-D kernel is the outer product."""
    centre = (size - 1) / 2
    taps = np.array([math.exp(-((t - centre) ** 2) / (2 * sigma**2)) for t in range(size)])
    return taps / taps.sum()


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    taps = gaussian_taps(size, sigma)
    return np.outer(taps, taps)


def reflect101(i: int, n: int) -> int:
    """Mirror without repeating the edge pixel (… 2 1 | 0 1 2 … n−1 | n−2 …), any distance."""
    if n == 1:
        return 0
    while i < 0 or i > n - 1:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def pad(image: np.ndarray, half: int, border: str) -> np.ndarray:
    """(C, H + 2·half, W + 2·half): reflect-101 indices or zeros outside the image."""
    C, H, W = image.shape
    padded = np.zeros((C, H + 2 * half, W + 2 * half))
    for py in range(H + 2 * half):
        for px in range(W + 2 * half):
            y, x = py - half, px - half
            if border == "reflect101":
                padded[:, py, px] = image[:, reflect101(y, H), reflect101(x, W)]
            elif border == "zeros":
                if 0 <= y < H and 0 <= x < W:
                    padded[:, py, px] = image[:, y, x]
            else:
                raise ValueError(border)
    return padded


def blur(image: np.ndarray, kernel: np.ndarray, border: str) -> np.ndarray:
    """Per-channel 2-D correlation with an odd square kernel: out[y, x] = Σ_ab k[a, b] · Ĩ[y + a − h, x + b − h].

    border: "reflect101" (Ĩ mirrors without repeating the edge) or "zeros" (Ĩ = 0 outside).
    """
    _, H, W = image.shape
    k = kernel.shape[0]
    padded = pad(image, k // 2, border)
    out = np.zeros_like(image)
    for a in range(k):
        for b in range(k):
            out += kernel[a, b] * padded[:, a : a + H, b : b + W]
    return out


def rise_kernel(size: int = 11, sigma: float = 5.0, truncate: float = 4.0) -> np.ndarray:
    """The "nearly flat" 11×11/σ=5 RISE kernel of docs/igos.md §7.3 (centre 0.0088, corner 0.0077, sum 1).

    A plain sampled 11-tap Gaussian with σ = 5 has centre 0.0120 and corner 0.0044, so it does not
    match these numbers. The numbers are reproduced by Gaussian-smoothing a centred delta on the
    11×11 grid with a σ = 5 Gaussian of radius ⌊truncate·σ + ½⌋ = 20 and half-sample ("d c b a | a b c d")
    reflecting borders, separably. Built here by loops and checked against those numbers in
    the tests.
    """
    radius = int(truncate * sigma + 0.5)
    taps = {t: math.exp(-(t * t) / (2 * sigma * sigma)) for t in range(-radius, radius + 1)}
    norm = sum(taps.values())
    centre = size // 2
    row = np.zeros(size)
    for i in range(size):
        # output i = Σ_t g(t) · delta[reflect(i + t)]
        for t, g in taps.items():
            j = i + t
            while j < 0 or j > size - 1:
                j = -1 - j if j < 0 else 2 * size - 1 - j
            if j == centre:
                row[i] += g / norm
    return np.outer(row, row)


# ----------------------------------------------------------------------------------------------
# Scores, path averages and integrated gradients (docs/igos.md §1, §2.1, §3).
# ----------------------------------------------------------------------------------------------


def score(model: nn.Module, x: np.ndarray | torch.Tensor, target: int) -> float:
    """f_c(x) = softmax(model(x))_c of one image (C, H, W)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    with torch.no_grad():
        return float(torch.softmax(model(x[None]), dim=1)[0, target])


def score_and_grad(model: nn.Module, x: np.ndarray, target: int) -> tuple[float, np.ndarray]:
    """(f_c(x), ∇_x f_c(x)) of one image (C, H, W), by autograd on that image alone."""
    leaf = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = torch.softmax(model(leaf[None]), dim=1)[0, target]
    value.backward()
    return float(value.detach()), leaf.grad.numpy().copy()


def compose(a: np.ndarray, z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Φ(A, Z; u) = A ⊙ u + Z ⊙ (1 − u), u (H, W) broadcast over channels."""
    return a * u[None] + z * (1.0 - u[None])


def view_images(view: str, image: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, Z): deletion Φ(I, B; ·), insertion Φ(B, I; ·)."""
    return (image, baseline) if view == "deletion" else (baseline, image)


def path_score(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int, view: str,
               u: np.ndarray, noise: np.ndarray) -> float:
    """S_view(u) = (1/N) Σ_k f_c(Φ(A, Z; α_k u) + ε_k), α_k = k/N; noise (N, C, H, W) holds ε_k."""
    a, z = view_images(view, image, baseline)
    steps = len(noise)
    total = 0.0
    for k in range(1, steps + 1):
        total += score(model, compose(a, z, (k / steps) * u) + noise[k - 1], target)
    return total / steps


def integrated_gradients(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int, view: str,
                         masks: Sequence[np.ndarray], noise: np.ndarray) -> list[np.ndarray]:
    """G(u) for u = Π_j U(m_j): the gradient of the path average with respect to each m_j (docs/igos.md §3).

    G_j = (1/N) Σ_k α_k · Uᵀ[ (Π_{l≠j} U(m_l)) ⊙ Σ_ch (A − Z)_ch ⊙ ∇_x f_c(x_k) ].
    """
    a, z = view_images(view, image, baseline)
    size = image.shape[1:]
    ups = [upsample(m, size) for m in masks]
    u = np.prod(ups, axis=0)
    steps = len(noise)
    du = np.zeros(size)  # ∂(path average)/∂u
    for k in range(1, steps + 1):
        alpha = k / steps
        _, grad_x = score_and_grad(model, compose(a, z, alpha * u) + noise[k - 1], target)
        du += alpha * ((a - z) * grad_x).sum(axis=0) / steps
    grads = []
    for j, m in enumerate(masks):
        others = np.ones(size)
        for l_index, up in enumerate(ups):
            if l_index != j:
                others = others * up
        grads.append(upsample_adjoint(others * du, m.shape))
    return grads


# ----------------------------------------------------------------------------------------------
# Objectives and descent directions (docs/igos.md §2.2, §3, §6).
# ----------------------------------------------------------------------------------------------

# The four integrated-gradient terms of docs/igos.md §3 (name: view, which masks form u; 0 = m_d, 1 = m_i).
IGOS_PP_CALLS = {
    "del_product": ("deletion", (0, 1)),
    "ins_product": ("insertion", (0, 1)),
    "del_d": ("deletion", (0,)),
    "ins_i": ("insertion", (1,)),
}


def igos_pp_objective(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int,
                      m_d: np.ndarray, m_i: np.ndarray, noise: dict[str, np.ndarray], l1_coeff: float,
                      tv_coeff: float, sigma: float = 0.01, beta: float = 2.0, symmetric: bool = False) -> float:
    """L = S_del(u_d ⊙ u_i) − S_ins(u_d ⊙ u_i) + S_del(u_d) − S_ins(u_i) + λ1 L1(m) + λ2 BTV(I, m), no ½."""
    size = image.shape[1:]
    u_d, u_i = upsample(m_d, size), upsample(m_i, size)

    def s(name: str, u: np.ndarray) -> float:
        return path_score(model, image, baseline, target, IGOS_PP_CALLS[name][0], u, noise[name])

    network = s("del_product", u_d * u_i) - s("ins_product", u_d * u_i) + s("del_d", u_d) - s("ins_i", u_i)
    return network + regularizer("btv", image, m_d * m_i, l1_coeff, tv_coeff, sigma, beta, symmetric)


def igos_pp_directions(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int,
                       m_d: np.ndarray, m_i: np.ndarray, noise: dict[str, np.ndarray], l1_coeff: float,
                       tv_coeff: float, sigma: float = 0.01, beta: float = 2.0,
                       symmetric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(g_d, g_i) of docs/igos.md §3: ½ on the network terms only, plus m_i ⊙ ∇R and m_d ⊙ ∇R."""

    def ig(name: str, masks: list[np.ndarray]) -> list[np.ndarray]:
        return integrated_gradients(model, image, baseline, target, IGOS_PP_CALLS[name][0], masks, noise[name])

    del_d_prod, del_i_prod = ig("del_product", [m_d, m_i])
    ins_d_prod, ins_i_prod = ig("ins_product", [m_d, m_i])
    (del_d,) = ig("del_d", [m_d])
    (ins_i,) = ig("ins_i", [m_i])
    grad_r = regularizer_grad("btv", image, m_d * m_i, l1_coeff, tv_coeff, sigma, beta, symmetric)
    g_d = 0.5 * (del_d_prod - ins_d_prod + del_d) + m_i * grad_r
    g_i = 0.5 * (del_i_prod - ins_i_prod - ins_i) + m_d * grad_r
    return g_d, g_i


def igos_objective(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int, mask: np.ndarray,
                   noise: np.ndarray, l1_coeff: float, tv_coeff: float, beta: float = 2.0) -> float:
    """I-GOS (docs/igos.md §6): L = S_del(U(m)) + λ1 L1(m) + λ2 (TV_v + TV_h)."""
    u = upsample(mask, image.shape[1:])
    network = path_score(model, image, baseline, target, "deletion", u, noise)
    return network + regularizer("tv", image, mask, l1_coeff, tv_coeff, beta=beta)


def igos_direction(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int, mask: np.ndarray,
                   noise: np.ndarray, l1_coeff: float, tv_coeff: float, beta: float = 2.0) -> np.ndarray:
    """I-GOS: g = G^del(U(m)) + ∇R(m), no ½."""
    (g,) = integrated_gradients(model, image, baseline, target, "deletion", [mask], noise)
    return g + regularizer_grad("tv", image, mask, l1_coeff, tv_coeff, beta=beta)


def igos_plus_objective(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int,
                        mask: np.ndarray, noise: dict[str, np.ndarray], l1_coeff: float, tv_coeff: float) -> float:
    """iGOS+ (docs/igos.md §6): L = S_del(U(m)) − S_ins(U(m)) + λ1 L1(m) + λ2 BTV(I, m); noise keys "del", "ins"."""
    u = upsample(mask, image.shape[1:])
    network = (path_score(model, image, baseline, target, "deletion", u, noise["del"])
               - path_score(model, image, baseline, target, "insertion", u, noise["ins"]))
    return network + regularizer("btv", image, mask, l1_coeff, tv_coeff)


def igos_plus_direction(model: nn.Module, image: np.ndarray, baseline: np.ndarray, target: int,
                        mask: np.ndarray, noise: dict[str, np.ndarray], l1_coeff: float,
                        tv_coeff: float) -> np.ndarray:
    """iGOS+: g = G^del − G^ins + ∇R, no ½."""
    (g_del,) = integrated_gradients(model, image, baseline, target, "deletion", [mask], noise["del"])
    (g_ins,) = integrated_gradients(model, image, baseline, target, "insertion", [mask], noise["ins"])
    return g_del - g_ins + regularizer_grad("btv", image, mask, l1_coeff, tv_coeff)


def line_search(objective, masks: np.ndarray, direction: np.ndarray, base: float, init_step: float = 1000.0,
                c: float = 1e-4, shrink: float = 0.2, min_step: float = 1e-5) -> float:
    """Revised Armijo backtracking of docs/igos.md §4.1 with a deterministic objective(candidate) -> float."""
    squared_norm = float((direction**2).sum())
    alpha = init_step
    while True:
        candidate = np.clip(masks - alpha * direction, 0.0, 1.0)
        if objective(candidate) <= base - c * alpha * squared_norm:
            return alpha
        if alpha < min_step:
            return alpha
        alpha *= shrink


# ----------------------------------------------------------------------------------------------
# Insertion / deletion metrics (docs/igos.md §7).
# ----------------------------------------------------------------------------------------------


def step_rule(cells: int) -> tuple[int, int, int]:
    """(q, n, r) of docs/igos.md §7.1: q = max(1, ⌊P/50⌋), n = ⌈P/q⌉, r = P − (n−1)·q."""
    q = max(1, cells // 50)
    n = -(-cells // q)
    return q, n, cells - (n - 1) * q


def ranking(saliency: np.ndarray) -> list[int]:
    """Flat cell indices, most salient first (descending saliency = ascending mask); ties by flat index."""
    flat = saliency.ravel()
    return sorted(range(len(flat)), key=lambda p: (-flat[p], p))


def trapezoid(x: Sequence[float], y: Sequence[float]) -> float:
    return sum((x[j] - x[j - 1]) * (y[j - 1] + y[j]) / 2 for j in range(1, len(x)))


def igos_metric(model: nn.Module, image: np.ndarray, baseline: np.ndarray, saliency: np.ndarray,
                target: int) -> dict[str, object]:
    """Protocol "igos" (docs/igos.md §7.1): cell ranking, q/n/r steps, soft U(T) keep mask, one baseline for both.

    Returns deletion/insertion curves (n+1 points, the 0 % point first), fractions x_j, trapezoid AUCs.
    """
    h, w = saliency.shape
    size = image.shape[1:]
    cells = h * w
    q, n, _ = step_rule(cells)
    order = ranking(saliency)
    keep = np.ones(cells)
    fractions, deletion, insertion = [], [], []
    for j in range(n + 1):
        removed = min(j * q, cells)
        if j > 0:
            for p in order[min((j - 1) * q, cells):removed]:
                keep[p] = 0.0
        u = upsample(keep.reshape(h, w), size)
        deletion.append(score(model, compose(image, baseline, u), target))
        insertion.append(score(model, compose(baseline, image, u), target))
        fractions.append(removed / cells)
    return {"deletion_curve": deletion, "insertion_curve": insertion, "fractions": fractions,
            "deletion": trapezoid(fractions, deletion), "insertion": trapezoid(fractions, insertion)}


def rise_metric(model: nn.Module, image: np.ndarray, saliency: np.ndarray, target: int, step: int,
                insertion_kernel: np.ndarray | None = None) -> dict[str, object]:
    """Protocol "rise" (docs/igos.md §7.3): per-pixel ranking of U(saliency), `step` pixels per step, hard switches.

    Deletion: from I, ranked pixels become 0. Insertion: from the mild blur of I (zero padding,
    `insertion_kernel`, default the RISE kernel of docs/igos.md §7.3), ranked pixels become I. Scores recorded before
    each modification: n + 1 points with n = ⌈HW/step⌉; AUC: trapezoid on a uniform grid over [0, 1].
    """
    _, H, W = image.shape
    pixels = H * W
    order = ranking(upsample(saliency, (H, W)))
    kernel = rise_kernel() if insertion_kernel is None else insertion_kernel
    n = -(-pixels // step)
    curves = {}
    for name, start, finish in (("deletion", image.copy(), np.zeros_like(image)),
                                ("insertion", blur(image, kernel, "zeros"), image.copy())):
        current = start.copy()
        curve = []
        for i in range(n + 1):
            curve.append(score(model, current, target))
            if i < n:
                for p in order[step * i : step * (i + 1)]:
                    y, x = divmod(p, W)
                    current[:, y, x] = finish[:, y, x]
        curves[name] = curve
    fractions = [i / n for i in range(n + 1)]
    return {"deletion_curve": curves["deletion"], "insertion_curve": curves["insertion"], "fractions": fractions,
            "deletion": trapezoid(fractions, curves["deletion"]),
            "insertion": trapezoid(fractions, curves["insertion"])}


EXACT = {"rtol": 1e-9, "atol": 1e-10}


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A float64 tensor of an array (test helper)."""
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def assert_close(got: torch.Tensor | np.ndarray | float, expected: object, **tolerance: float) -> None:
    """Assert a library value equals a reference value (default: tight float64 tolerances)."""
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64), **(tolerance or EXACT))
