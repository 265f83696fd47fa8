"""Calling the classifier: target scores, chunked batches, pass counting, NaN checks."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ._errors import IGOSError, NonFiniteError

ScoreKind = Literal["softmax", "sigmoid", "logit"]
SCORE_KINDS = ("softmax", "sigmoid", "logit")
Precision = Literal["fp32", "bf16"]
PRECISIONS = ("fp32", "bf16")
LOW_SCORE_WARNING = 1e-6


@dataclass
class PassCount:
    """Images pushed through the model: `forwards` in all, `backwards` of them with a backward pass."""

    forwards: int = 0
    backwards: int = 0


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with parameters that need no gradient; restores the model's state afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        model.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)


class ScoredModel:
    """A classifier seen as a function from images to the score of one target class per image.

    Args:
        model: maps (n, C, H, W) to logits (n, K).
        score: "softmax" (probability), "sigmoid" (multi-label probability) or "logit".
        batch_size: most images in one forward pass (bounds memory).
        precision: "fp32" calls the model as it is; "bf16" runs only the model's forward under
            torch.autocast(bfloat16) on the images' device and returns the logits as float32, so the
            scores and everything built from them stay float32. bf16 needs float32 images.
        channels_last: give the model its input in the channels-last memory format (the values are
            the same). The model's own weights are left as they are: convert them once with
            `model.to(memory_format=torch.channels_last)` for the full effect.
    """

    def __init__(self, model: nn.Module, score: ScoreKind = "softmax", batch_size: int = 64,
                 precision: Precision = "fp32", channels_last: bool = False) -> None:
        if score not in SCORE_KINDS:
            raise IGOSError(f"score must be one of {SCORE_KINDS}, got {score!r}")
        if batch_size < 1:
            raise IGOSError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise IGOSError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(channels_last, bool):
            raise IGOSError(f"channels_last must be True or False, got {channels_last!r}")
        self.model = model
        self.score = score
        self.batch_size = batch_size
        self.precision = precision
        self.channels_last = channels_last
        self.passes = PassCount()

    def logits(self, images: Tensor) -> Tensor:
        """Logits (n, K) of images (n, C, H, W), without gradient, in chunks."""
        with torch.no_grad():
            return torch.cat([self._forward(images[i : i + self.batch_size], False)
                              for i in range(0, len(images), self.batch_size)])

    def target_scores(self, images: Tensor, targets: Tensor, *, backward: bool = False) -> Tensor:
        """Score of each row's target class: images (n, C, H, W), targets (n,) -> (n,).

        One forward, no chunking (callers chunk); `backward` says whether the caller will
        backpropagate through it (counted, and autograd enabled).
        """
        with torch.set_grad_enabled(backward):
            logits = self._forward(images, backward)
            return select_score(logits, targets, self.score)

    def scores_of_rows(self, rows: int, make_inputs: Callable[[Tensor], Tensor], targets: Tensor) -> Tensor:
        """Scores of `rows` images built chunk by chunk, without gradient.

        Args:
            rows: number of images.
            make_inputs: maps row indices (r,) to the images (r, C, H, W) of those rows.
            targets: (rows,) target class per row.

        Returns:
            (rows,) scores.
        """
        out = []
        for start in range(0, rows, self.batch_size):
            index = torch.arange(start, min(rows, start + self.batch_size), device=targets.device)
            out.append(self.target_scores(make_inputs(index), targets[index]).detach())
        return torch.cat(out) if out else targets.new_zeros(0, dtype=torch.float32)

    def _forward(self, images: Tensor, backward: bool) -> Tensor:
        """Logits (n, K) of images (n, C, H, W) in the chosen precision and memory format; counted and checked."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            if images.dtype != torch.float32:
                raise IGOSError(f"precision='bf16' autocasts a float32 model; the images must be float32, "
                                f"got {images.dtype}")
            with torch.autocast(images.device.type, dtype=torch.bfloat16):
                logits = self.model(images)
            logits = logits.float()
        else:
            logits = self.model(images)
        self.passes.forwards += len(images)
        if backward:
            self.passes.backwards += len(images)
        if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
            raise IGOSError(f"the model must return logits of shape (n, K); got {tuple(logits.shape)} "
                            f"for {len(images)} images")
        if not torch.isfinite(logits).all():
            raise NonFiniteError("the model returned NaN or infinite logits; check the model and its input "
                                 "normalisation (igos cannot explain a non-finite output)")
        return logits


def select_score(logits: Tensor, targets: Tensor, score: ScoreKind) -> Tensor:
    """Score of the target class per row: logits (n, K), targets (n,) -> (n,)."""
    picked = logits.gather(1, targets.view(-1, 1)).squeeze(1)
    if score == "softmax":
        return (picked - torch.logsumexp(logits, dim=1)).exp()
    if score == "sigmoid":
        return torch.sigmoid(picked)
    return picked


def resolve_targets(scored: ScoredModel, images: Tensor, targets: object) -> tuple[Tensor, Tensor]:
    """Target class per image (top-1 when None) and its clean score.

    Returns:
        targets (B,) long on the images' device, clean scores (B,).
    """
    logits = scored.logits(images)
    if targets is None:
        chosen = logits.argmax(dim=1)
    else:
        chosen = torch.as_tensor(targets, device=images.device).long().reshape(-1)
        if chosen.numel() != len(images):
            raise IGOSError(f"targets must have one class per image: {chosen.numel()} for {len(images)} images")
        bad = (chosen < 0) | (chosen >= logits.shape[1])
        if bad.any():
            raise IGOSError(f"target classes {chosen[bad].tolist()} are outside [0, {logits.shape[1] - 1}]")
    clean = select_score(logits, chosen, scored.score)
    if scored.score != "logit" and (clean < LOW_SCORE_WARNING).any():
        low = (clean < LOW_SCORE_WARNING).nonzero().flatten().tolist()
        warnings.warn(f"images {low}: the target score is below {LOW_SCORE_WARNING:g}; gradients vanish and the "
                      "map will be near zero (finite, but uninformative)", RuntimeWarning, stacklevel=3)
    return chosen, clean
