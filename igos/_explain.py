"""`explain`: one entry point for every saliency method, returning an `Explanation`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._composition import blur_baseline, resize_map, upsample
from ._errors import IGOSError, NonFiniteError
from ._gradients import gradcam_saliency, gradient_saliency, integrated_gradients_saliency, last_conv_layer
from ._igos import VARIANTS, optimize_masks
from ._options import (
    GradCAMOptions,
    GradientOptions,
    IGOSOptions,
    IntegratedGradientsOptions,
    MaskOptions,
    RiseOptions,
    build_options,
)
from ._paths import PathProblem
from ._perturbation import meaningful_perturbation_masks, rise_saliency
from ._scoring import PassCount, Precision, ScoredModel, frozen, resolve_targets

METHODS = ("igos++", "igos+", "igos", "igos-insertion", "mask", "rise", "gradcam", "integrated-gradients",
           "gradient")
OPTION_CLASSES: dict[str, type] = {
    **{name: IGOSOptions for name in VARIANTS},
    "mask": MaskOptions,
    "rise": RiseOptions,
    "gradcam": GradCAMOptions,
    "integrated-gradients": IntegratedGradientsOptions,
    "gradient": GradientOptions,
}


@dataclass
class Explanation:
    """Saliency maps of a batch and how they were made.

    Attributes:
        saliency: (B, h, w) in [0, 1], higher = more important. For mask methods 1 − Π masks
            (iGOS++: 1 − m_d ⊙ m_i); for the others the map min–max normalised per image
            (a constant map becomes 0).
        method: the method's name.
        targets: (B,) explained class per image.
        target_scores: (B,) score of the target on the clean image.
        mask_size: (h, w); input_size: (H, W).
        masks: (B, P, h, w) raw masks, low = important (mask methods), else None.
        history: {"loss": (K, B), "step": (K, B)} per iteration of the mask methods (I-GOS family:
            the accepted step, NaN once an image stopped early; Mask: Adam's learning rate); else None.
        passes: images forwarded and backpropagated through the model.
        options: the resolved options.
    """

    saliency: Tensor
    method: str
    targets: Tensor
    target_scores: Tensor
    mask_size: tuple[int, int]
    input_size: tuple[int, int]
    masks: Tensor | None = None
    history: dict[str, Tensor] | None = None
    passes: PassCount = field(default_factory=PassCount)
    options: dict[str, Any] = field(default_factory=dict)

    def upsample(self, size: tuple[int, int] | None = None) -> Tensor:
        """Saliency bilinearly upsampled (align_corners=True) to `size` (default: the input size): (B, H, W)."""
        return upsample(self.saliency, tuple(size or self.input_size)).clamp(0, 1)


def explain(model: nn.Module, images: Tensor, *, method: str = "igos++", targets: Sequence[int] | Tensor | None = None,
            mask_size: int | tuple[int, int] = 28, seed: int | Sequence[int] = 0, baseline: Tensor | None = None,
            score: str | None = None, batch_size: int = 64, precision: Precision = "fp32",
            channels_last: bool = False, **options: Any) -> Explanation:
    """Explain the model's decision on each image.

    Args:
        model: classifier mapping (n, C, H, W) to logits (n, K); put in eval mode with frozen
            weights for the call and restored afterwards.
        images: (B, C, H, W) in the model's input space (any C, H, W).
        method: one of METHODS.
        targets: class per image, or None for each image's top-1 class.
        mask_size: (h, w) or s for s×s; at most the input size.
        seed: int (image b uses seed + b) or one seed per image; each image has its own
            generator, so a batch equals B single calls with the matching seeds.
        baseline: (B, C, H, W) or (C, H, W); default the heavy blur of docs/igos.md §5.2, scaled to the size.
        score: "softmax" (default; "logit" for gradcam), "sigmoid" or "logit".
        batch_size: most images per forward pass.
        precision: "fp32" (default) or "bf16": the model's forward passes run under
            torch.autocast(bfloat16) (CPU or CUDA, following the images), and so do their backward
            passes; masks, composition, noise, scores and the line search stay float32. Needs float32 images.
            Faster on GPUs with bfloat16 tensor cores; the maps differ slightly from fp32 (measured in
            benchmarks/results/igos_gpu.md).
        channels_last: feed the model channels-last inputs (convert the model yourself with
            `model.to(memory_format=torch.channels_last)`; igos leaves its weights as they are).
        **options: the method's options (see IGOSOptions, MaskOptions, RiseOptions, ...).

    Returns:
        An Explanation with saliency (B, h, w).

    >>> explanation = explain(model, x, method="igos++", mask_size=28)  # doctest: +SKIP
    >>> heatmap = explanation.upsample()                                  # (B, H, W)
    """
    if method not in METHODS:
        raise IGOSError(f"unknown method {method!r}; choose one of {METHODS}")
    parsed = build_options(OPTION_CLASSES[method], method, options)
    images = _check_images(images)
    size = _check_mask_size(mask_size, tuple(images.shape[-2:]))
    generators = _generators(seed, len(images), images.device)
    baselines = _baselines(baseline, images)
    scorer = ScoredModel(model, score or ("logit" if method == "gradcam" else "softmax"), batch_size, precision,
                         channels_last)

    with frozen(model):
        chosen, clean = resolve_targets(scorer, images, targets)
        masks = history = None
        resolved: Any = parsed
        if method in VARIANTS:
            variant = VARIANTS[method]
            resolved = parsed.resolved(full_resolution_mask=size == tuple(images.shape[-2:]),
                                       default_regularizer=variant.regularizer)
            problem = PathProblem(scorer, images, baselines, chosen, variant.terms, variant.n_masks,
                                  resolved.ig_nodes, resolved.noise_std, resolved.quadrature)
            result = optimize_masks(problem, variant, resolved, size, generators)
            masks, history = result.masks, {"loss": result.loss, "step": result.step}
            saliency = 1 - masks.prod(dim=1)
        elif method == "mask":
            masks, losses = meaningful_perturbation_masks(scorer, images, baselines, chosen, size, parsed)
            history = {"loss": losses, "step": torch.full_like(losses, parsed.learning_rate)}
            saliency = 1 - masks[:, 0]
        else:
            saliency = normalise_maps(resize_map(_map_of(method, parsed, scorer, images, baselines, chosen, generators,
                                                     model), size))

    if not torch.isfinite(saliency).all():
        raise NonFiniteError(f"{method} produced a non-finite saliency map")
    return Explanation(saliency.detach(), method, chosen, clean, size, tuple(images.shape[-2:]), masks, history,
                       scorer.passes, {k: v for k, v in vars(resolved).items() if k != "target_layer"})


def _map_of(method: str, options: Any, scorer: ScoredModel, images: Tensor, baselines: Tensor, targets: Tensor,
            generators: list[torch.Generator], model: nn.Module) -> Tensor:
    """Raw, unnormalised map (B, h', w') of the non-mask methods."""
    if method == "gradient":
        return gradient_saliency(scorer, images, targets)
    if method == "integrated-gradients":
        return integrated_gradients_saliency(scorer, images, baselines, targets, options.ig_steps)
    if method == "gradcam":
        return gradcam_saliency(scorer, images, targets, options.target_layer or last_conv_layer(model))
    return rise_saliency(scorer, images, targets, options, generators)


def normalise_maps(maps: Tensor) -> Tensor:
    """Min–max per image to [0, 1]; a constant map becomes 0. (B, h, w) -> (B, h, w)."""
    low = maps.flatten(1).amin(dim=1)[:, None, None]
    span = maps.flatten(1).amax(dim=1)[:, None, None] - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)


def _check_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise IGOSError(f"images must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if not images.is_floating_point():
        raise IGOSError(f"images must be floating point, got {images.dtype}")
    if not torch.isfinite(images).all():
        raise NonFiniteError("images contain NaN or infinite values")
    return images.detach()


def _check_mask_size(mask_size: int | tuple[int, int], input_size: tuple[int, int]) -> tuple[int, int]:
    size = (mask_size, mask_size) if isinstance(mask_size, int) else tuple(int(s) for s in mask_size)
    if len(size) != 2 or min(size) < 1 or size[0] > input_size[0] or size[1] > input_size[1]:
        raise IGOSError(f"mask_size must be between 1 and the input size {input_size}, got {mask_size}")
    return size


def _generators(seed: int | Sequence[int], count: int, device: torch.device) -> list[torch.Generator]:
    seeds = [seed + i for i in range(count)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != count:
        raise IGOSError(f"seed must be an int or one seed per image: got {len(seeds)} seeds for {count} images")
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def _baselines(baseline: Tensor | None, images: Tensor) -> Tensor:
    if baseline is None:
        return blur_baseline(images)
    baseline = torch.as_tensor(baseline, device=images.device, dtype=images.dtype)
    try:
        return baseline.expand_as(images)
    except RuntimeError as error:
        raise IGOSError(f"baseline of shape {tuple(baseline.shape)} does not match images "
                        f"{tuple(images.shape)}") from error
