"""Option sets of each method, validated before any work starts."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ._errors import IGOSError
from ._quadrature import QUADRATURES, Quadrature

Mode = Literal["fast", "faithful"]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise IGOSError(message)


@dataclass(frozen=True)
class IGOSOptions:
    """Options of the I-GOS family (iGOS++, iGOS+, I-GOS and the insertion-only ablation).

    Defaults (docs/igos.md §5.1): K = 20 iterations, N = 15 IG steps, λ1 = 1 (10 when the mask has the
    input's resolution), λ2 = 20, noise std 0.2, α0 = 1000, Armijo c = 1e-4, shrink 0.2, floor 1e-5.

    `mode` sets the levers of docs/igos.md §9 that are left as None:
        faithful: fresh noise at every evaluation, line search from α0 every time, fixed K.
        fast: common noise within an iteration (`common_noise`), base loss from the IG pass
            (`reuse_base_loss`), warm-started step min(α0, α_prev / shrink) (`warm_start`), early stop
            (`early_stop`): an image stops once, for `early_stop_patience` iterations in a row, its masks
            moved by less than `early_stop_tol` (max |Δm|) or its line search fell to the floor step.
        quadrature: the path integral of each iteration on `ig_nodes` Gauss–Legendre nodes instead of N
            uniform steps (docs/igos.md §3.1); faithful mode keeps the published right Riemann sum. `ig_nodes`
            left at None: `gauss_nodes_for(ig_steps)`.
    `parallel_trials` evaluates that many line-search trials in one batch (docs/igos.md §4.1).
    """

    iterations: int = 20
    ig_steps: int = 15
    l1_coeff: float | None = None
    tv_coeff: float = 20.0
    noise_std: float = 0.2
    init_step: float = 1000.0
    armijo_c: float = 1e-4
    step_shrink: float = 0.2
    min_step: float = 1e-5
    line_search: bool = True
    fixed_step: float = 8.0
    btv_sigma: float = 0.01
    btv_beta: float = 2.0
    symmetric_btv: bool = False
    regularizer: Literal["btv", "tv", "none"] | None = None
    mode: Mode = "fast"
    common_noise: bool | None = None
    reuse_base_loss: bool | None = None
    warm_start: bool | None = None
    early_stop: bool | None = None
    early_stop_tol: float = 1e-3
    early_stop_patience: int = 3
    parallel_trials: int = 1
    quadrature: Quadrature | None = None
    ig_nodes: int | None = None

    def __post_init__(self) -> None:
        _require(self.mode in ("fast", "faithful"), f"mode must be 'fast' or 'faithful', got {self.mode!r}")
        _require(self.iterations >= 1, "iterations must be >= 1")
        _require(self.ig_steps >= 1, "ig_steps must be >= 1")
        _require(self.noise_std >= 0, "noise_std must be >= 0")
        _require(self.l1_coeff is None or self.l1_coeff >= 0, "l1_coeff must be >= 0")
        _require(self.tv_coeff >= 0, "tv_coeff must be >= 0")
        _require(self.init_step > 0 and self.fixed_step > 0, "init_step and fixed_step must be > 0")
        _require(0 < self.step_shrink < 1, "step_shrink must be in (0, 1)")
        _require(self.min_step > 0 and self.armijo_c >= 0, "min_step must be > 0 and armijo_c >= 0")
        _require(self.btv_sigma > 0 and self.btv_beta > 0, "btv_sigma and btv_beta must be > 0")
        _require(self.regularizer in (None, "btv", "tv", "none"), "regularizer must be 'btv', 'tv' or 'none'")
        _require(self.parallel_trials >= 1, "parallel_trials must be >= 1")
        _require(self.early_stop_tol >= 0 and self.early_stop_patience >= 1,
                 "early_stop_tol must be >= 0 and early_stop_patience >= 1")
        _require(self.quadrature in (None, *QUADRATURES), f"quadrature must be one of {QUADRATURES}")
        _require(self.ig_nodes is None or self.ig_nodes >= 1, "ig_nodes must be >= 1")
        _require(not (self.quadrature == "riemann" and self.ig_nodes not in (None, self.ig_steps)),
                 "the riemann quadrature has ig_steps nodes; ig_nodes applies to gauss-legendre")
        if self.reuse_base_loss and self.common_noise is False:
            raise IGOSError("reuse_base_loss needs common_noise (the IG pass's noise is reused by the line search)")

    def resolved(self, *, full_resolution_mask: bool, default_regularizer: str) -> IGOSOptions:
        """Fill every None from the mode, the mask resolution and the variant."""
        fast = self.mode == "fast"
        common = self.common_noise if self.common_noise is not None else fast or bool(self.reuse_base_loss)
        quadrature = self.quadrature or ("gauss-legendre" if fast else "riemann")
        nodes = self.ig_steps if quadrature == "riemann" else self.ig_nodes or gauss_nodes_for(self.ig_steps)
        return dataclasses.replace(
            self,
            l1_coeff=self.l1_coeff if self.l1_coeff is not None else (10.0 if full_resolution_mask else 1.0),
            regularizer=self.regularizer or default_regularizer,
            common_noise=common,
            reuse_base_loss=self.reuse_base_loss if self.reuse_base_loss is not None else fast and common,
            warm_start=self.warm_start if self.warm_start is not None else fast,
            early_stop=self.early_stop if self.early_stop is not None else fast,
            quadrature=quadrature,
            ig_nodes=nodes,
        )


def gauss_nodes_for(ig_steps: int) -> int:
    """Gauss–Legendre nodes used in place of `ig_steps` right-Riemann steps: ⌈N/4⌉, at least 3.

    The rule was measured on a ResNet-18 trained on the synthetic films (benchmarks/results/igos_trained.md).
    The floor of 3 is for models whose score along the path is not smooth: on a model that thresholds its input
    (tests/pipeline/test_explain.py's marker model) the 2 interior nodes both miss the part of the path where the
    score changes, and the masks never move; the Riemann sum, which always includes α = 1, does not miss it.
    """
    return max(3, math.ceil(ig_steps / 4))


@dataclass(frozen=True)
class MaskOptions:
    """Meaningful perturbation (Fong & Vedaldi 2017), approximate settings (docs/igos.md §6).

    Means of ‖1 − m‖₁ and TV_β (β = 3) with λ1 = 0.01, λ2 = 0.2; Adam, learning rate 0.1.
    """

    iterations: int = 300
    learning_rate: float = 0.1
    l1_coeff: float = 0.01
    tv_coeff: float = 0.2
    tv_beta: float = 3.0

    def __post_init__(self) -> None:
        _require(self.iterations >= 1 and self.learning_rate > 0, "iterations >= 1 and learning_rate > 0")
        _require(self.l1_coeff >= 0 and self.tv_coeff >= 0 and self.tv_beta > 0, "coefficients must be >= 0")


@dataclass(frozen=True)
class RiseOptions:
    """RISE (Petsiuk et al. 2018): random binary grids of `cell_grid`² cells kept with `keep_prob`."""

    n_masks: int = 4000
    cell_grid: int = 7
    keep_prob: float = 0.5

    def __post_init__(self) -> None:
        _require(self.n_masks >= 1 and self.cell_grid >= 1, "n_masks and cell_grid must be >= 1")
        _require(0 < self.keep_prob < 1, "keep_prob must be in (0, 1)")


@dataclass(frozen=True)
class IntegratedGradientsOptions:
    """Pixel integrated gradients from the baseline to the image with `ig_steps` right-Riemann steps."""

    ig_steps: int = 20

    def __post_init__(self) -> None:
        _require(self.ig_steps >= 1, "ig_steps must be >= 1")


@dataclass(frozen=True)
class GradCAMOptions:
    """Grad-CAM on `target_layer` (default: the model's last nn.Conv2d)."""

    target_layer: nn.Module | None = None


@dataclass(frozen=True)
class GradientOptions:
    """Plain gradient |∂f_c/∂x|, maximum over channels. No options."""


def build_options(cls: type, method: str, given: dict[str, Any]) -> Any:
    """Instantiate an options class, naming the unknown keys and listing the valid ones."""
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - valid)
    if unknown:
        raise IGOSError(f"unknown option(s) {unknown} for method {method!r}; valid options: {sorted(valid)}")
    try:
        return cls(**given)
    except TypeError as error:
        raise IGOSError(f"bad option for method {method!r}: {error}") from error
