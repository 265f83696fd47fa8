"""The faithfulness benchmark's settings and units (`python -m benchmarks.faithfulness`): the run's Config, the
methods compared, a model with its benchmark images (Subject, with its synthetic ground truth, Truth), and the
Runner that explains and scores one method × mask size × model (a Unit), cached per (model, method, mask size,
settings) under --work so that a rerun (or a run after a crash) recomputes only what is missing."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import igos
from datasets.atomic import atomic_path

# (row label, igos method) in the paper's order.
METHODS = (("iGOS++", "igos++"), ("iGOS+", "igos+"), ("I-GOS", "igos"), ("Mask", "mask"), ("RISE", "rise"),
           ("Grad-CAM", "gradcam"), ("Integrated gradients", "integrated-gradients"), ("Gradient", "gradient"))
IGOS_FAMILY = frozenset({"igos++", "igos+", "igos", "igos-insertion"})
PROTOCOLS = ("igos", "rise")
# igos.explain's defaults: the report names every setting of a run that differs from them.
LIBRARY_DEFAULTS = {"iterations": 20, "ig_steps": 15, "mask_iterations": 300, "rise_masks": 4000,
                    "ig_baseline_steps": 20, "mode": "fast"}


@dataclass
class Config:
    """Settings of one run (all recorded in the output)."""

    imagenet: Path | None
    weights: Path | None
    arch: str
    work: Path
    out: Path
    quick: bool
    image_size: int
    dataset_size: int
    n_train: int
    images: int
    archs: list[str]
    epochs: dict[str, int]
    iterations: int
    ig_steps: int
    mask_iterations: int
    rise_masks: int
    ig_baseline_steps: int
    mode: str
    mask_sizes: list[int]  # descending, the input size first
    ablation_images: int
    modes_images: int
    sanity_images: int
    focus_arch: str
    igos_metric_steps: int | None
    rise_metric_steps: int
    explain_batch: int
    forward_batch: int
    threads: int
    seed: int
    command: str


@dataclass
class Truth:
    """Synthetic ground truth of the benchmark images, at the dataset's resolution (H, W).

    lesion: (n, H, W) bool; text: (n, H, W) bool, the true text boxes grown by AuditConfig.dilate px
    (pipeline.audit's default, 2); flipped: (n,) bool, the model's prediction on the image differs from that
    on its text-free copy;
    clean_accuracy: accuracy on the text-free copies.
    """

    lesion: np.ndarray
    text: np.ndarray
    flipped: np.ndarray
    clean_accuracy: float


@dataclass
class Subject:
    """A model and its benchmark images.

    model: eval mode, channels-last; images: (n, C, S, S) model inputs; key: identity of weights and images
    (cache keys); gradcam_size: side of the last Conv2d's output; info: what the Models table shows.
    """

    name: str
    model: nn.Module
    images: Tensor
    key: str
    gradcam_size: int
    info: dict[str, Any] = field(default_factory=dict)
    truth: Truth | None = None


@dataclass
class Unit:
    """One method × mask size × model on the first n images.

    saliency: (n, h, w); targets: (n,); seconds: explain wall time of all n images (metrics excluded);
    scores: "protocol/insertion" or "protocol/deletion" -> (n,) AUCs.
    """

    saliency: Tensor
    targets: Tensor
    seconds: float
    scores: dict[str, Tensor]

    def head(self, n: int) -> Unit:
        """The first n images (explain is deterministic per seed and batch-invariant on the CPU)."""
        return Unit(self.saliency[:n], self.targets[:n], self.seconds * n / len(self.targets),
                    {k: v[:n] for k, v in self.scores.items()})



# ------------------------------------------------------------------------------------------- running units


class Runner:
    """Computes units through the cache in `cfg.work / "cache"` and logs progress to stderr."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started = time.perf_counter()
        self.cache = cfg.work / "cache"

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f} s] {message}", file=sys.stderr, flush=True)

    def options(self, method: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run's explain options of `method`, updated with `extra`."""
        cfg = self.cfg
        base: dict[str, Any] = {}
        if method in IGOS_FAMILY:
            base = {"iterations": cfg.iterations, "ig_steps": cfg.ig_steps, "mode": cfg.mode}
        elif method == "mask":
            base = {"iterations": cfg.mask_iterations}
        elif method == "rise":
            base = {"n_masks": cfg.rise_masks}
        elif method == "integrated-gradients":
            base = {"ig_steps": cfg.ig_baseline_steps}
        return {**base, **(extra or {})}

    def metric_steps(self, protocol: str) -> int | None:
        return self.cfg.igos_metric_steps if protocol == "igos" else self.cfg.rise_metric_steps

    def unit(self, subject: Subject, method: str, size: int, n: int, *, extra: dict[str, Any] | None = None,
             protocols: Sequence[str] = PROTOCOLS, seed_offset: int = 0, model: nn.Module | None = None,
             model_tag: str = "trained", targets: Tensor | None = None) -> Unit:
        """Explain the first n images of `subject` (image i with seed cfg.seed + seed_offset + i) and score them.

        model / model_tag: another model than the subject's (the randomised ones) and its name in the cache key;
        targets: (n,) classes to explain (default: each image's top-1 class).
        """
        cfg = self.cfg
        n = min(n, len(subject.images))
        options = self.options(method, extra)
        key = {"subject": subject.key, "model": model_tag, "method": method, "size": size, "n": n,
               "options": {k: repr(v) for k, v in sorted(options.items())}, "protocols": list(protocols),
               "seed": cfg.seed + seed_offset, "metric_steps": [self.metric_steps(p) for p in protocols],
               "targets": None if targets is None else hashlib.sha256(targets[:n].numpy().tobytes()).hexdigest()}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = self.cache / subject.name / f"{model_tag}-{method}-{size}-{n}-{digest}.pt"
        if path.exists():
            stored = torch.load(path, weights_only=True)
            return Unit(stored["saliency"], stored["targets"], float(stored["seconds"]), stored["scores"])
        model = subject.model if model is None else model
        saliency, chosen, scores = [], [], {f"{p}/{kind}": [] for p in protocols for kind in ("insertion", "deletion")}
        seconds = 0.0
        for first in range(0, n, cfg.explain_batch):
            chunk = subject.images[first : min(n, first + cfg.explain_batch)]
            start = time.perf_counter()
            explanation = igos.explain(model, chunk, method=method, mask_size=size, seed=cfg.seed + seed_offset + first,
                                       targets=None if targets is None else targets[first : first + len(chunk)],
                                       batch_size=cfg.forward_batch, channels_last=True, **options)
            seconds += time.perf_counter() - start
            saliency.append(explanation.saliency)
            chosen.append(explanation.targets)
            for protocol in protocols:
                result = igos.insertion_deletion(model, chunk, explanation.saliency, targets=explanation.targets,
                                                 protocol=protocol, steps=self.metric_steps(protocol),
                                                 batch_size=cfg.forward_batch, channels_last=True)
                scores[f"{protocol}/insertion"].append(result.insertion)
                scores[f"{protocol}/deletion"].append(result.deletion)
        unit = Unit(torch.cat(saliency), torch.cat(chosen), seconds, {k: torch.cat(v) for k, v in scores.items()})
        with atomic_path(path) as temporary:
            torch.save({"saliency": unit.saliency, "targets": unit.targets, "seconds": unit.seconds,
                        "scores": unit.scores}, temporary)
        tail = ", ".join(f"{k} {v.mean():.3f}" for k, v in unit.scores.items())
        self.log(f"{subject.name} {model_tag} {method} {size}×{size}: {n} images, {seconds / n:.2f} s/image; {tail}")
        return unit
