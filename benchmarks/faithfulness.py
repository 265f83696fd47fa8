"""Faithfulness benchmark: the iGOS++ paper's Tables 1–3 on classifiers trained here, with ground truth and a
sanity check.

Synthetic path (default; nothing is downloaded). Generates a COVIDx-like dataset with its default text shortcut
(datasets.synthetic), trains (seeded, pipeline.train) the small CNN, a ResNet-18 and a ResNet-50 at a low input
resolution (checkpoints cached under --work), and on the `test` split measures:

1. insertion and deletion AUCs (igos.insertion_deletion, protocols "igos" and "rise") of iGOS++, iGOS+, I-GOS,
   Mask, RISE, Grad-CAM, integrated gradients and the gradient at mask sizes 7, 14, 28 and the input size
   (Grad-CAM at its layer's size; RISE, integrated gradients, gradient at the input size), mean ± std, one table
   per architecture as the paper's Tables 1–2;
2. the ablations of Table 3 on the ResNet-18 (28×28 and the input size, protocol "igos");
3. iGOS++ fast vs faithful mode: insertion/deletion and time per image;
4. ground truth: saliency mass on the lesion and on the burned-in text, and the text share on images whose
   prediction flips when the text alone is removed (the generator's text-free copy) vs those where it does not;
5. the model-parameter randomisation test (Adebayo et al. 2018): layers re-initialised from the logits down,
   cumulatively; Spearman ρ between the trained and the randomised model's maps.

ImageNet path (--imagenet DIR --weights FILE): the paper's setting, 224×224 input with ImageNet normalisation,
mask sizes 224/28/14/7, K = 20, N = 15 (faithful mode), on a torchvision ResNet-50 or VGG19 whose state dict
FILE holds (torch.load weights_only); DIR holds images (ImageNet-val style; labels are not needed: each image's
top-1 class is explained). Writes Tables 1–3 to faithfulness_imagenet.md / .json.

Every explanation and score is cached per (model, method, mask size, settings) under --work, so a rerun (or a
run after a crash) recomputes only what is missing.

    python -m benchmarks.faithfulness --quick        # seconds: proves the script runs (temp work dir and output)
    python -m benchmarks.faithfulness                # CPU defaults (see --help)
    python -m benchmarks.faithfulness --imagenet /data/imagenet/val --weights resnet50.pth --arch resnet50
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

import igos
from benchmarks.common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESULTS,
    ROOT,
    command_line,
    cpu_model,
    load_average,
    now,
    program,
    write_results,
)
from datasets import synthetic
from datasets.atomic import atomic_path, sha256_of, write_text
from datasets.images import read_image
from pipeline.audit import AuditConfig, saliency_shares, upsample_saliency
from pipeline.checkpoint import checkpoint_digest, load_checkpoint, model_input
from pipeline.inputs import load_resized
from pipeline.text import TextBox, box_mask
from pipeline.train import TrainConfig, records_sha256, train_classifier

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# (row label, igos method) in the paper's order.
METHODS = (("iGOS++", "igos++"), ("iGOS+", "igos+"), ("I-GOS", "igos"), ("Mask", "mask"), ("RISE", "rise"),
           ("Grad-CAM", "gradcam"), ("Integrated gradients", "integrated-gradients"), ("Gradient", "gradient"))
LABEL = dict((method, label) for label, method in METHODS)
MASK_METHODS = frozenset({"igos++", "igos+", "igos", "mask"})  # at every mask size
IGOS_FAMILY = frozenset({"igos++", "igos+", "igos", "igos-insertion"})
STOCHASTIC = frozenset({"igos++", "igos+", "igos", "rise"})  # noise in the iGOS family, random masks in RISE
PROTOCOLS = ("igos", "rise")
# Table 3 rows: (label, method, options beyond the run's settings). "no BTV" keeps a smoothness term: plain TV.
ABLATIONS = (
    ("I-GOS", "igos", {}),
    ("Insertion (I-GOS with −S_ins)", "igos-insertion", {}),
    ("I-GOS + Insertion (naïve; = iGOS+)", "igos+", {}),
    ("iGOS++ (no noise: noise_std 0)", "igos++", {"noise_std": 0.0}),
    ("iGOS++ (fixed step: no line search, step 8)", "igos++", {"line_search": False}),
    ("iGOS++ (no BTV: plain TV instead)", "igos++", {"regularizer": "tv"}),
    ("iGOS++", "igos++", {}),
)
# Cascading randomisation (top-level module names, logits first), per architecture.
CASCADES = {
    "resnet18": (("logits (fc)", ("fc",)), ("+ layer4", ("layer4",)), ("+ layer3 (half)", ("layer3",)),
                 ("+ layer2", ("layer2",)), ("+ layer1, stem (all)", ("layer1", "bn1", "conv1"))),
    "small_cnn": (("logits (head)", ("head",)), ("+ stage 4", ("features.12", "features.13")),
                  ("+ stage 3 (half)", ("features.8", "features.9")), ("+ stage 2", ("features.4", "features.5")),
                  ("+ stage 1 (all)", ("features.0", "features.1"))),
}
CASCADES["resnet50"] = CASCADES["resnet18"]
SANITY_MAX_RHO = 0.5  # a method passes when its |mean ρ| stays below this at every cascade step (fixed beforehand)
MODES_TOLERANCE = 0.01  # fast must be within this of faithful on both insertion and deletion
SELF_SEED_OFFSET = 10_000  # the reseeded run that measures how much a stochastic method's map moves by chance
# Quoted from the iGOS++ paper's tables (ImageNet, 5 000 images, the official AUC: docs/igos.md §7.2); compared in
# the ImageNet output only.
PAPER = {
    "resnet50": {"iGOS++": {224: (0.0328, 0.7261), 28: (0.0929, 0.7284), 7: (0.1810, 0.7332)},
                 "I-GOS": {224: (0.0420, 0.5846), 28: (0.1059, 0.5986), 7: (0.1607, 0.6632)},
                 "Mask": {224: (0.0468, 0.4962), 28: (0.1151, 0.5559), 7: (0.2259, 0.6003)},
                 "RISE": {224: (0.1196, 0.5637)}, "Integrated gradients": {224: (0.0907, 0.2921)},
                 "Grad-CAM": {7: (0.1675, 0.6521)}},
    "vgg19": {"iGOS++": {224: (0.0344, 0.6537), 28: (0.0796, 0.7066), 14: (0.1123, 0.7061)},
              "I-GOS": {224: (0.0336, 0.5246), 28: (0.0899, 0.5701), 14: (0.1213, 0.6387)},
              "Mask": {224: (0.0482, 0.4158), 28: (0.1056, 0.5335), 14: (0.1753, 0.5647)},
              "RISE": {224: (0.1082, 0.5139)}, "Integrated gradients": {224: (0.0663, 0.2551)},
              "Grad-CAM": {14: (0.1527, 0.5938)}},
}
PAPER_ABLATION = {"I-GOS": (0.0420, 0.5846, 0.1059, 0.5986), "Insertion": (0.0760, 0.6192, 0.1321, 0.7231),
                  "I-GOS + Insertion (naïve)": (0.0322, 0.6175, 0.2037, 0.5103),
                  "iGOS++ (no noise)": (0.0490, 0.5943, 0.0904, 0.7108),
                  "iGOS++ (fixed step size)": (0.0332, 0.5695, 0.1052, 0.7060),
                  "iGOS++ (no BTV)": (0.0245, 0.6742, 0.0813, 0.6825), "iGOS++": (0.0328, 0.7261, 0.0929, 0.7284)}

# Defaults for the 2 shared CPU cores, from a calibration run (6 images per model, 1-min load average ~3.5, 1
# thread): 36-px input, the smallest at which the ResNets' last layer keeps 2×2 cells for Grad-CAM; K = 4, N = 2;
# all 20 maps of one image with both metrics took ~2 s (small CNN), ~15 s (ResNet-18) and ~30 s (ResNet-50); the
# paper's metric (~50 steps a curve) is about half of it. 1 thread: with other processes on the cores, 2 OpenMP
# threads ran a ResNet-18 forward 2× slower (15.5 vs 7.8 ms/image at 48 px). --quick: seconds.
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "image_size": 36, "dataset_size": 72, "n_train": 300, "images": 100, "archs": "small_cnn,resnet18,resnet50",
    "epochs": "small_cnn:12,resnet18:10,resnet50:10", "iterations": 4, "ig_steps": 2, "mask_iterations": 30,
    "rise_masks": 300, "ig_baseline_steps": 10, "mode": "fast", "mask_sizes": "7,14,28", "rise_metric_steps": 18,
    "ablation_images": 30, "modes_images": 30, "sanity_images": 16, "focus_arch": "resnet18", "explain_batch": 25,
    "forward_batch": 256, "threads": 1,
}
QUICK: dict[str, Any] = {
    "image_size": 32, "dataset_size": 64, "n_train": 36, "images": 2, "archs": "small_cnn,resnet18",
    "focus_arch": "small_cnn",
    "epochs": "small_cnn:1,resnet18:1", "igos_metric_steps": 8, "rise_metric_steps": 8, "iterations": 2,
    "ig_steps": 2, "mask_iterations": 3, "rise_masks": 16, "ig_baseline_steps": 2,
    "ablation_images": 2, "modes_images": 2, "sanity_images": 2, "explain_batch": 2, "forward_batch": 64,
    "threads": 1,
}
# The paper's settings (docs/igos.md §5.1; the iGOS++ paper's tables): library defaults for every method,
# faithful (official) update rule.
IMAGENET_DEFAULTS: dict[str, Any] = {
    "image_size": 224, "images": 5000, "iterations": 20, "ig_steps": 15, "mask_iterations": 300, "rise_masks": 4000,
    "ig_baseline_steps": 20, "mode": "faithful", "mask_sizes": "7,14,28", "ablation_images": 5000,
    "explain_batch": 16, "forward_batch": 128, "threads": 2,
}
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


# --------------------------------------------------------------------------------------------- subjects


def last_conv_size(model: nn.Module, image: Tensor) -> int:
    """Side of the output of the model's last nn.Conv2d (Grad-CAM's default layer) for one image (1, C, S, S)."""
    layer = igos.last_conv_layer(model)
    sizes: list[int] = []
    handle = layer.register_forward_hook(lambda _m, _i, output: sizes.append(output.shape[-1]))
    try:
        with torch.no_grad():
            model(image)
    finally:
        handle.remove()
    return sizes[-1]


def synthetic_dataset(cfg: Config, runner: Runner) -> Path:
    """The synthetic COVIDx folder of these settings under cfg.work (generated once)."""
    n_test = max(cfg.images, 3 if cfg.quick else 100)  # the first images of a fixed test split, whatever --images
    settings = {"n_train": cfg.n_train, "n_test": n_test, "image_size": cfg.dataset_size, "seed": cfg.seed}
    root = cfg.work / ("data-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10])
    if not (root / synthetic.MANIFEST).exists():
        runner.log(f"generating the synthetic dataset {settings} (default shortcut) in {root}")
        synthetic.generate(root, **settings, overwrite=True)
    return root


def trained_checkpoint(cfg: Config, runner: Runner, root: Path, arch: str) -> tuple[Path, dict[str, Any]]:
    """Train `arch` on the synthetic `train` split (or reuse the cached checkpoint); returns it and training info."""
    config = TrainConfig(architecture=arch, image_size=cfg.image_size, epochs=cfg.epochs[arch], batch_size=32,
                         learning_rate=3e-3 if arch == "small_cnn" else 1e-3, schedule="onecycle",
                         patience=cfg.epochs[arch], seed=cfg.seed)
    records = synthetic.split_records(root, "train")
    tag = hashlib.sha256(json.dumps([records_sha256(records), dataclasses.asdict(config)]).encode()).hexdigest()
    path = cfg.work / "models" / f"{arch}-{cfg.image_size}px-{tag[:10]}.safetensors"
    info_path = path.with_name(path.stem + "_info.json")
    if not info_path.exists():
        runner.log(f"training {arch} at {cfg.image_size} px for {config.epochs} epochs")
        result = train_classifier(records, path, config, device="cpu")
        info = {"epochs": config.epochs, "selected_epoch": result.epoch, "learning_rate": config.learning_rate,
                "schedule": config.schedule, "validation": result.validation, "train_images": result.n_train,
                "train_seconds": round(result.seconds, 1)}
        write_text(info_path, json.dumps(info, indent=1) + "\n")
        runner.log(f"trained {arch}: validation macro-F1 {result.validation['macro_f1']:.3f}, {result.seconds:.0f} s")
    return path, json.loads(info_path.read_text())


def synthetic_subject(cfg: Config, runner: Runner, root: Path, arch: str) -> Subject:
    """Train (or load) `arch` and prepare the first cfg.images `test` images, their ground truth and flips."""
    checkpoint, info = trained_checkpoint(cfg, runner, root, arch)
    model, meta = load_checkpoint(checkpoint)
    model = model.to(memory_format=torch.channels_last).eval()
    records = synthetic.split_records(root, "test")[: cfg.images]
    clean_records = synthetic.split_records(root, "test", clean=True)[: cfg.images]
    truths = synthetic.read_truth(root, "test")[: cfg.images]
    images = model_input(torch.stack([load_resized(r, cfg.image_size) for r in records]), meta)
    clean = model_input(torch.stack([load_resized(r, cfg.image_size) for r in clean_records]), meta)
    with torch.no_grad():
        predicted, predicted_clean = model(images).argmax(1), model(clean).argmax(1)
    labels = torch.tensor([meta.labels.index(r.label) for r in records])
    lesion = np.stack([read_image(root / t.lesion) > 0.5 for t in truths])
    shape = lesion.shape[1:]
    grow = AuditConfig().dilate
    text = np.stack([box_mask(shape, [TextBox(b.x0, b.y0, b.x1, b.y1, 1.0) for b in t.text_boxes], grow)
                     for t in truths])
    truth = Truth(lesion, text, (predicted != predicted_clean).numpy(),
                  float((predicted_clean == labels).float().mean()))
    info.update(test_accuracy=float((predicted == labels).float().mean()), clean_accuracy=truth.clean_accuracy,
                flipped=int(truth.flipped.sum()), images=len(records), labels=list(meta.labels))
    key = f"{checkpoint_digest(checkpoint)}:{sha256_of(root / synthetic.MANIFEST)}:{cfg.image_size}"
    return Subject(arch, model, images, key, last_conv_size(model, images[:1]), info, truth)


def imagenet_files(cfg: Config) -> list[Path]:
    """Up to cfg.images image files of the folder: all when there are fewer, else a seeded random sample."""
    assert cfg.imagenet is not None
    files = sorted(p for p in cfg.imagenet.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"--imagenet {cfg.imagenet}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    if len(files) > cfg.images:
        files = sorted(random.Random(cfg.seed).sample(files, cfg.images))
    return files


def imagenet_input(path: Path, size: int) -> Tensor:
    """The paper's input: shorter side to size·256/224, centre crop size², ImageNet-normalised: (3, S, S)."""
    image = Image.open(path).convert("RGB")
    resize = round(size * 256 / 224)
    scale = resize / min(image.size)
    image = image.resize((max(resize, round(image.width * scale)), max(resize, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    pixels = torch.from_numpy(np.asarray(image.crop((left, top, left + size, top + size)), np.float32) / 255)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (pixels.permute(2, 0, 1) - mean) / std


def imagenet_subject(cfg: Config) -> Subject:
    """The torchvision model with the weights file and the folder's images."""
    assert cfg.imagenet is not None and cfg.weights is not None
    model = getattr(torchvision.models, cfg.arch)(weights=None)
    model.load_state_dict(torch.load(cfg.weights, map_location="cpu", weights_only=True))
    model = model.to(memory_format=torch.channels_last).eval()
    files = imagenet_files(cfg)
    images = torch.stack([imagenet_input(path, cfg.image_size) for path in files])
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{sha256_of(path)}\n".encode())
    key = f"{sha256_of(cfg.weights)}:{digest.hexdigest()}:{cfg.image_size}"
    info = {"images": len(files), "weights": str(cfg.weights), "folder": str(cfg.imagenet)}
    return Subject(cfg.arch, model, images, key, last_conv_size(model, images[:1]), info)


# --------------------------------------------------------------------------------------------- sections


def sizes_of(method: str, subject: Subject, cfg: Config) -> list[int]:
    """Mask sizes a method is evaluated at: every size (mask methods), the layer's (Grad-CAM), else the input's."""
    if method in MASK_METHODS:
        return cfg.mask_sizes
    return [subject.gradcam_size] if method == "gradcam" else [cfg.image_size]


def main_units(runner: Runner, subject: Subject) -> dict[tuple[str, int], Unit]:
    """Tables 1–2: every method at its sizes on all images, both protocols."""
    cfg = runner.cfg
    return {(method, size): runner.unit(subject, method, size, cfg.images)
            for _, method in METHODS for size in sizes_of(method, subject, cfg)}


def ablation_units(runner: Runner, subject: Subject, main: dict[tuple[str, int], Unit]
                   ) -> dict[tuple[str, int], Unit]:
    """Table 3 rows at 28×28 and the input size (protocol "igos"); rows equal to a main unit reuse its images."""
    cfg = runner.cfg
    units = {}
    for label, method, extra in ABLATIONS:
        for size in ablation_sizes(cfg):
            if not extra and (method, size) in main:
                units[label, size] = main[method, size].head(cfg.ablation_images)
            else:
                units[label, size] = runner.unit(subject, method, size, cfg.ablation_images, extra=extra,
                                                 protocols=("igos",))
    return units


def ablation_sizes(cfg: Config) -> list[int]:
    """The input size and 28 (when smaller), as Table 3's 224 and 28."""
    return sorted({cfg.image_size, min(28, cfg.image_size)}, reverse=True)


def mode_units(runner: Runner, subject: Subject, settings: dict[str, int] | None = None) -> dict[str, Unit]:
    """iGOS++ fast and faithful at 28×28 (or the input size when smaller) on the same images, one after the other,
    with the run's K and N or with `settings` ({"iterations": K, "ig_steps": N})."""
    cfg = runner.cfg
    size = min(28, cfg.image_size)
    return {mode: runner.unit(subject, "igos++", size, cfg.modes_images, extra={"mode": mode, **(settings or {})})
            for mode in ("fast", "faithful")}


def randomised(model: nn.Module, modules: Sequence[str], seed: int) -> nn.Module:
    """The model with every submodule under `modules` re-initialised (reset_parameters, seeded); a copy."""
    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    for name in modules:
        for module in model.get_submodule(name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return model.to(memory_format=torch.channels_last).eval()


def upsampled(maps: Tensor, size: int) -> np.ndarray:
    """Maps (n, h, w) bilinearly upsampled (align_corners=True, as igos) to (n, size·size)."""
    if maps.shape[-1] != size:
        maps = nn.functional.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    return maps.flatten(1).numpy()


def spearman(first: Tensor, second: Tensor, size: int) -> list[float]:
    """Spearman ρ per image of two map sets (n, h, w) upsampled to size² (NaN where a map is constant)."""
    rhos = []
    for x, y in zip(upsampled(first, size), upsampled(second, size), strict=True):
        constant = x.min() == x.max() or y.min() == y.max()
        rhos.append(math.nan if constant else float(spearmanr(x, y).statistic))
    return rhos


def mask_size_near_28(cfg: Config) -> int:
    """The mask size of the ground-truth and sanity tables: the computed one nearest the paper's 28×28."""
    return min(cfg.mask_sizes, key=lambda size: abs(size - 28))


def sanity_rows(runner: Runner, subject: Subject, main: dict[tuple[str, int], Unit]) -> list[dict[str, Any]]:
    """Cascading randomisation: per method, Spearman ρ of trained vs randomised maps after each cascade step.

    Mask methods at 28×28 (or the input size when smaller), Grad-CAM at its layer, the rest at the input size;
    the randomised models explain the trained model's top-1 class; the first cfg.sanity_images images.
    """
    cfg = runner.cfg
    n = min(cfg.sanity_images, cfg.images)
    steps, done = [], []
    for index, (name, modules) in enumerate(CASCADES[subject.name]):
        done += modules
        steps.append((name, randomised(subject.model, done, cfg.seed + 1000 + index)))
    rows = []
    for label, method in METHODS:
        size = mask_size_near_28(cfg) if method in MASK_METHODS else sizes_of(method, subject, cfg)[0]
        trained = main[method, size].head(n)
        row: dict[str, Any] = {"method": label, "size": size, "steps": {}, "constant_maps": 0, "low_score_warnings": 0}
        if method in STOCHASTIC:
            other = runner.unit(subject, method, size, n, protocols=(), seed_offset=SELF_SEED_OFFSET)
            row["self"] = summary(spearman(trained.saliency, other.saliency, cfg.image_size))
        for index, (name, model) in enumerate(steps):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                unit = runner.unit(subject, method, size, n, protocols=(), model=model, model_tag=f"random{index}",
                                   targets=trained.targets)
            row["low_score_warnings"] += sum("target score is below" in str(w.message) for w in caught)
            rhos = spearman(trained.saliency, unit.saliency, cfg.image_size)
            row["constant_maps"] += sum(math.isnan(r) for r in rhos)
            row["steps"][name] = {**summary(rhos), "constant": sum(math.isnan(r) for r in rhos)}
        finite = [step["mean"] for step in row["steps"].values() if math.isfinite(step["mean"])]
        row["passes"] = bool(finite) and all(abs(mean) < SANITY_MAX_RHO for mean in finite)  # |ρ|: inverted maps
        rows.append(row)
    return rows


def truth_rows(subject: Subject, main: dict[tuple[str, int], Unit], cfg: Config) -> list[dict[str, Any]]:
    """Per method: lesion and text shares of the maps (mask methods at 28×28) and text share by counterfactual."""
    truth = subject.truth
    assert truth is not None
    shape = truth.lesion.shape[1:]
    rows = []
    for label, method in METHODS:
        size = mask_size_near_28(cfg) if method in MASK_METHODS else sizes_of(method, subject, cfg)[0]
        maps = [upsample_saliency(m.numpy(), shape) for m in main[method, size].saliency]
        lesion_images = [i for i in range(len(maps)) if truth.lesion[i].any()]
        text_images = [i for i in range(len(maps)) if truth.text[i].any()]
        lesion_mass = [saliency_shares(maps[i], truth.lesion[i])[0] for i in lesion_images]
        pointing = [saliency_shares(maps[i], truth.lesion[i], 1 / maps[i].size)[1] for i in lesion_images]
        text = {i: saliency_shares(maps[i], truth.text[i])[0] for i in text_images}
        flipped = [text[i] for i in text_images if truth.flipped[i]]
        kept = [text[i] for i in text_images if not truth.flipped[i]]
        both = bool(flipped) and bool(kept)
        rows.append({
            "method": label, "size": size, "lesion_mass": summary(lesion_mass), "lesion_pointing": summary(pointing),
            "text_mass": summary(list(text.values())), "text_flipped": summary(flipped), "text_kept": summary(kept),
            "flip_auc": float(roc_auc_score(truth.flipped[text_images], list(text.values()))) if both else math.nan,
        })
    lesion_area = [float(truth.lesion[i].mean()) for i in range(len(truth.lesion)) if truth.lesion[i].any()]
    text_area = [float(truth.text[i].mean()) for i in range(len(truth.text)) if truth.text[i].any()]
    rows.append({"method": "(uniform map: area = chance)", "size": None, "lesion_mass": summary(lesion_area),
                 "lesion_pointing": summary(lesion_area), "text_mass": summary(text_area),
                 "text_flipped": summary([float(truth.text[i].mean()) for i in range(len(truth.text))
                                          if truth.text[i].any() and truth.flipped[i]]),
                 "text_kept": summary([float(truth.text[i].mean()) for i in range(len(truth.text))
                                       if truth.text[i].any() and not truth.flipped[i]]), "flip_auc": 0.5})
    return rows


# ----------------------------------------------------------------------------------------------- report


def summary(values: Sequence[float] | Tensor) -> dict[str, float]:
    """Mean, sample std and count of the finite values (NaN mean/std when there are none)."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    mean = sum(finite) / len(finite) if finite else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else math.nan
    return {"mean": mean, "std": std, "n": len(finite)}


def cell(stats: dict[str, float], digits: int = 4) -> str:
    if not math.isfinite(stats["mean"]):
        return "–"
    std = f" ± {stats['std']:.3f}" if math.isfinite(stats["std"]) else ""
    return f"{stats['mean']:.{digits}f}{std}"


def main_json(units: dict[tuple[str, int], Unit]) -> dict[str, Any]:
    """{method: {size: {"protocol/kind": stats, "seconds_per_image": s}}}."""
    out: dict[str, Any] = {}
    for (method, size), unit in units.items():
        entry = {name: summary(values) for name, values in unit.scores.items()}
        entry["seconds_per_image"] = unit.seconds / len(unit.targets)
        out.setdefault(LABEL[method], {})[str(size)] = entry
    return out


def main_tables(subject: Subject, units: dict[tuple[str, int], Unit], cfg: Config) -> list[str]:
    """Per protocol a table like the paper's Tables 1–2 (columns: sizes, descending), and one of explain times."""
    sizes = sorted({size for _, size in units}, reverse=True)
    head = "| method | " + " | ".join(f"{s} del | {s} ins" for s in sizes) + " |"
    rule = "|---|" + "---:|---:|" * len(sizes)
    lines = []
    for protocol in PROTOCOLS:
        lines += ["", f"Protocol `{protocol}` ({PROTOCOL_NOTES[protocol]}); {subject.name}, {len(subject.images)} "
                  "images, mean ± std over images:", "", head, rule]
        for label, method in METHODS:
            cells = []
            for size in sizes:
                unit = units.get((method, size))
                cells += ["–", "–"] if unit is None else [cell(summary(unit.scores[f"{protocol}/{kind}"]))
                                                          for kind in ("deletion", "insertion")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Explanation wall time, s / image ({subject.name}; batches of {cfg.explain_batch} images, "
              "metrics excluded):", "", "| method | " + " | ".join(f"{s}×{s}" for s in sizes) + " |",
              "|---|" + "---:|" * len(sizes)]
    for label, method in METHODS:
        times = [units[method, s].seconds / len(units[method, s].targets) if (method, s) in units else None
                 for s in sizes]
        lines.append(f"| {label} | " + " | ".join("–" if t is None else f"{t:.3f}" for t in times) + " |")
    return lines


PROTOCOL_NOTES = {
    "igos": "the paper's, docs/igos.md §7.1: cells of the mask grid ranked, heavy-blur baseline for both curves, soft "
            "cell borders; trapezoid AUC incl. the 0 % point (docs/igos.md §7.2)",
    "rise": "docs/igos.md §7.3: pixels ranked at input resolution, deletion to zeros, insertion from an 11×11 σ 5 blur",
}


def ablation_table(units: dict[tuple[str, int], Unit], cfg: Config, subject: Subject) -> list[str]:
    sizes = ablation_sizes(cfg)
    lines = ["", f"{subject.name}, the first {cfg.ablation_images} images, protocol `igos`, mean ± std:", "",
             "| variant | " + " | ".join(f"{s} del | {s} ins" for s in sizes) + " |",
             "|---|" + "---:|---:|" * len(sizes)]
    for label, _, _ in ABLATIONS:
        cells = [cell(summary(units[label, s].scores[f"igos/{kind}"]))
                 for s in sizes for kind in ("deletion", "insertion")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def paired(fast: Tensor, faithful: Tensor) -> dict[str, float]:
    """Paired difference fast − faithful (n,): mean, std, 95 % interval (normal approximation)."""
    stats = summary(fast - faithful)
    half = 1.96 * stats["std"] / math.sqrt(stats["n"]) if stats["n"] > 1 else math.nan
    return {**stats, "low": stats["mean"] - half, "high": stats["mean"] + half}


def modes_json(units: dict[str, Unit]) -> dict[str, Any]:
    fast, faithful = units["fast"], units["faithful"]
    out: dict[str, Any] = {mode: {"seconds_per_image": u.seconds / len(u.targets),
                                  **{k: summary(v) for k, v in u.scores.items()}} for mode, u in units.items()}
    out["difference"] = {k: paired(fast.scores[k], faithful.scores[k]) for k in fast.scores}
    out["passes"] = {p: all(abs(out["difference"][f"{p}/{k}"]["mean"]) <= MODES_TOLERANCE
                            for k in ("insertion", "deletion")) for p in PROTOCOLS}
    return out


def modes_table(numbers: dict[str, Any], cfg: Config, subject: Subject, iterations: int, ig_steps: int
                ) -> list[str]:
    size = min(28, cfg.image_size)
    lines = ["", f"iGOS++ on {subject.name}, {size}×{size}, the first {cfg.modes_images} images (same seeds), "
             f"K = {iterations}, N = {ig_steps}. Target: fast within {MODES_TOLERANCE} of faithful on both "
             "insertion and deletion (the mean paired difference; its 95 % interval in brackets).", "",
             "| protocol | faithful del | fast del | Δ del (fast − faithful) | faithful ins | fast ins | Δ ins "
             "| within 0.01 on both? | s / image faithful | s / image fast |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for protocol in PROTOCOLS:
        cells = []
        for kind in ("deletion", "insertion"):
            d = numbers["difference"][f"{protocol}/{kind}"]
            cells += [cell(numbers["faithful"][f"{protocol}/{kind}"]), cell(numbers["fast"][f"{protocol}/{kind}"]),
                      f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"]
        verdict = "**pass**" if numbers["passes"][protocol] else "**FAIL**"
        lines.append(f"| {protocol} | " + " | ".join(cells) + f" | {verdict} | "
                     f"{numbers['faithful']['seconds_per_image']:.2f} | {numbers['fast']['seconds_per_image']:.2f} |")
    return lines


def truth_table(rows: list[dict[str, Any]], subject: Subject) -> list[str]:
    truth = subject.truth
    assert truth is not None
    n = len(truth.flipped)
    lines = ["", f"{subject.name}: {int(truth.flipped.sum())} of {n} predictions change when the text alone is "
             f"removed (test accuracy {subject.info['test_accuracy']:.3f}, on the text-free copies "
             f"{truth.clean_accuracy:.3f}); {int(truth.lesion.any(axis=(1, 2)).sum())} images have a lesion. "
             "Mean ± std over images.", "",
             "| method | size | lesion mass share | pointing hit (max on lesion) | text mass share | text share, "
             "prediction flips | text share, no flip | ROC AUC text share → flip |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        size = "–" if row["size"] is None else f"{row['size']}×{row['size']}"
        auc = "–" if not math.isfinite(row["flip_auc"]) else f"{row['flip_auc']:.3f}"
        lines.append(f"| {row['method']} | {size} | " + " | ".join(
            cell(row[k], 3) for k in ("lesion_mass", "lesion_pointing", "text_mass", "text_flipped", "text_kept"))
            + f" | {auc} |")
    return lines


def sanity_table(rows: list[dict[str, Any]], subject: Subject, cfg: Config) -> list[str]:
    names = [name for name, _ in CASCADES[subject.name]]
    lines = ["", f"{subject.name}, the first {min(cfg.sanity_images, cfg.images)} images: mean Spearman ρ (± std) "
             "between the trained model's map and the map of the model with the layers re-initialised cumulatively "
             "from the logits down (reset_parameters, seeded; BatchNorm statistics reset too); maps upsampled to "
             f"{cfg.image_size}×{cfg.image_size}; the randomised models explain the trained model's top-1 class. "
             f"Passes: |mean ρ| < {SANITY_MAX_RHO} at every step (threshold fixed before the run; |ρ|, so an "
             "inverted map does not pass) and ρ defined at one step at least; a constant map (ρ undefined, counted "
             "as 'const.') is left out of the mean. 'Other seed': ρ "
             "between two trained-model maps with different seeds (chance agreement of a stochastic method).", "",
             "| method | size | other seed | " + " | ".join(names) + " | constant maps | passes |",
             "|---|---:|---:|" + "---:|" * len(names) + "---:|---|"]
    for row in rows:
        own = cell(row["self"], 3) if "self" in row else "–"
        lines.append(f"| {row['method']} | {row['size']}×{row['size']} | {own} | "
                     + " | ".join(sanity_cell(row["steps"][name]) for name in names)
                     + f" | {row['constant_maps']} | {'yes' if row['passes'] else '**no**'} |")
    return lines


def sanity_cell(step: dict[str, float]) -> str:
    """ρ mean ± std over the defined images, and how many maps were constant (ρ undefined)."""
    text = cell(step, 3)
    return text + (f" ({step['constant']} const.)" if step["constant"] else "")


def models_table(subjects: Sequence[Subject], cfg: Config) -> list[str]:
    lines = ["", "| model | input | train images | epochs (selected) | validation macro-F1 | test accuracy | "
             "accuracy, text removed | predictions that flip without text | Grad-CAM layer | training s |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in subjects:
        i = s.info
        lines.append(f"| {s.name} | 1×{cfg.image_size}×{cfg.image_size} | {i['train_images']} | {i['epochs']} "
                     f"({i['selected_epoch']}) | {i['validation']['macro_f1']:.3f} | {i['test_accuracy']:.3f} | "
                     f"{i['clean_accuracy']:.3f} | {i['flipped']} / {i['images']} | {s.gradcam_size}×{s.gradcam_size}"
                     f" | {i['train_seconds']} |")
    return lines


def machine_lines(cfg: Config, load: tuple[float, float], seconds: float) -> list[str]:
    return [
        f"- date: {now()}",
        f"- command: `{cfg.command}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), torchvision {torchvision.__version__}, python {platform.python_version()}; 1-min load average "
        f"at start / end {load[0]:.2f} / {load[1]:.2f} (other processes sharing the cores inflate every timing)",
        f"- total wall time: {seconds:.0f} s ({seconds / 60:.1f} min), including cached units' load time; "
        f"cache and checkpoints in `{cfg.work}`",
    ]


def settings_lines(cfg: Config) -> list[str]:
    """Every setting, and where it differs from the paper default."""
    # The ImageNet path reproduces the official code, whose update rule is the faithful mode.
    reference = {**LIBRARY_DEFAULTS, "mode": "faithful"} if cfg.imagenet else LIBRARY_DEFAULTS
    differs = [f"{name} {getattr(cfg, name)} (paper/library: {default})" for name, default in reference.items()
               if getattr(cfg, name) != default]
    counts = f"{cfg.images} (main tables), {cfg.ablation_images} (ablations)" + (
        "" if cfg.imagenet else f", {cfg.modes_images} (fast vs faithful), {cfg.sanity_images} (sanity)")
    rise_note = "the library's 224" if cfg.rise_metric_steps == 224 else \
        f"{cfg.rise_metric_steps} (one step = {cfg.image_size}²/{cfg.rise_metric_steps} pixels; RISE's 224 at 224²)"
    lines = [
        f"- input {cfg.image_size}×{cfg.image_size}; mask sizes {', '.join(map(str, cfg.mask_sizes))}; images: "
        f"{counts}; image i explained with seed {cfg.seed} + i; seed {cfg.seed} for data, training and "
        "randomisation",
        f"- iGOS family: K = {cfg.iterations} iterations, N = {cfg.ig_steps} IG steps, mode `{cfg.mode}` in the main "
        "tables and ablations, λ1 1 (10 at the input size), λ2 20, noise 0.2, α0 1000 (library defaults); Mask: "
        f"{cfg.mask_iterations} Adam iterations; RISE: {cfg.rise_masks} masks (7×7 cells, p 0.5); integrated "
        f"gradients: {cfg.ig_baseline_steps} steps from the blur baseline; explain calls of {cfg.explain_batch} "
        f"images, forward chunks of {cfg.forward_batch}, channels-last on the CPU (same values)",
        "- metric steps: protocol `igos` "
        + ("the paper's ⌊P/50⌋ cells per step (docs/igos.md §7.1)" if cfg.igos_metric_steps is None
           else f"{cfg.igos_metric_steps} steps")
        + f", protocol `rise` {rise_note}; softmax probability of the explained (top-1) class",
        "- **differs from the paper/library defaults**: " + ("; ".join(differs) if differs else "nothing"),
    ]
    return lines


# ----------------------------------------------------------------------------------------------- the runs


def run_synthetic(cfg: Config, runner: Runner) -> tuple[list[str], dict[str, Any]]:
    root = synthetic_dataset(cfg, runner)
    subjects = [synthetic_subject(cfg, runner, root, arch) for arch in cfg.archs]
    focus = next(s for s in subjects if s.name == cfg.focus_arch)
    main = {s.name: main_units(runner, s) for s in subjects}
    ablation = ablation_units(runner, focus, main[focus.name])
    modes = modes_json(mode_units(runner, focus))
    paper_k_n = {"iterations": LIBRARY_DEFAULTS["iterations"], "ig_steps": LIBRARY_DEFAULTS["ig_steps"]}
    modes_at_defaults = modes_json(mode_units(runner, focus, paper_k_n))
    truth = {s.name: truth_rows(s, main[s.name], cfg) for s in subjects}
    sanity = sanity_rows(runner, focus, main[focus.name])
    lines = ["## Models", "", "Trained here on the synthetic `train` split (datasets.synthetic.generate, "
             f"{cfg.n_train} images at {cfg.dataset_size} px, default shortcut 0.9, seed {cfg.seed}; validation "
             "carved by patient), Adam with a one-cycle schedule, seeded; evaluated on the first "
             f"{cfg.images} `test` images. Training seconds were measured when the checkpoint was trained (a "
             "rerun reuses the cached checkpoint)."]
    lines += models_table(subjects, cfg)
    lines += ["", "## Insertion / deletion (the paper's Tables 1–2)", "",
              "Lower deletion and higher insertion are better. These are not the paper's ImageNet numbers (other "
              "data, models and input size); compare methods within a table."]
    for s in subjects:
        lines += ["", f"### {s.name}", *main_tables(s, main[s.name], cfg)]
    lines += ["", "## Ablations (the paper's Table 3)", *ablation_table(ablation, cfg, focus)]
    lines += ["", "## Fast vs faithful iGOS++", "", "With the run's K and N (those of every table here):",
              *modes_table(modes, cfg, focus, cfg.iterations, cfg.ig_steps), "",
              "With the library's defaults, the paper's K and N (what `igos.explain` does unless told otherwise):",
              *modes_table(modes_at_defaults, cfg, focus, paper_k_n["iterations"], paper_k_n["ig_steps"])]
    lines += ["", "## Ground truth: lesion, text and the text-removal counterfactual", "",
              "Shares of each map's mass (upsampled to the dataset's "
              f"{cfg.dataset_size} px as pipeline.audit does): on the lesion (images with one), and inside the true "
              "text boxes grown by 2 px (images with text), split by whether the model's prediction changes when the "
              "text alone is removed (the generator's text-free copy). A method that shows the evidence the model "
              "uses should put more mass on text where removing the text flips the prediction (AUC > 0.5). Mask "
              "methods at 28×28, Grad-CAM at its layer, the others at the input size."]
    for s in subjects:
        lines += ["", f"### {s.name}", *truth_table(truth[s.name], s)]
    lines += ["", "## Sanity check: cascading model-parameter randomisation (Adebayo et al. 2018)"]
    lines += sanity_table(sanity, focus, cfg)
    numbers = {"models": {s.name: {**s.info, "gradcam_size": s.gradcam_size} for s in subjects},
               "main": {s.name: main_json(main[s.name]) for s in subjects},
               "ablation": {f"{label} @ {size}": {k: summary(v) for k, v in u.scores.items()}
                            for (label, size), u in ablation.items()},
               "modes": modes, "modes_at_library_defaults": modes_at_defaults, "truth": truth, "sanity": sanity}
    return lines, numbers


def run_imagenet(cfg: Config, runner: Runner) -> tuple[list[str], dict[str, Any]]:
    subject = imagenet_subject(cfg)
    main = main_units(runner, subject)
    ablation = ablation_units(runner, subject, main)
    lines = ["## Model and images", "", f"torchvision `{cfg.arch}(weights=None)` with the state dict `{cfg.weights}`; "
             f"{len(subject.images)} images of `{cfg.imagenet}` (a seeded sample when the folder holds more), shorter "
             f"side to {round(cfg.image_size * 256 / 224)} px, centre crop {cfg.image_size}², ImageNet normalisation; "
             f"each image's top-1 class explained; Grad-CAM layer {subject.gradcam_size}×{subject.gradcam_size}.",
             "", "## Insertion / deletion (the paper's Tables 1–2)", "", f"### {cfg.arch}"]
    lines += main_tables(subject, main, cfg)
    if cfg.arch in PAPER:
        lines += ["", f"The paper's numbers for {cfg.arch} (the iGOS++ paper's tables: 5 000 ImageNet images, the "
                  "official AUC of docs/igos.md §7.2, which differs from the trapezoid here by up to ±0.02; compare "
                  "with protocol `igos`):", "",
                  "| method | size | del | ins |", "|---|---:|---:|---:|"]
        lines += [f"| {label} | {size} | {d:.4f} | {i:.4f} |" for label, by_size in PAPER[cfg.arch].items()
                  for size, (d, i) in by_size.items()]
    lines += ["", "## Ablations (the paper's Table 3)", *ablation_table(ablation, cfg, subject)]
    lines += ["", "The paper's Table 3 (ResNet50; 224 del, 224 ins, 28 del, 28 ins):", "",
              "| variant | 224 del | 224 ins | 28 del | 28 ins |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + " |"
              for label, values in PAPER_ABLATION.items()]
    numbers = {"model": {"arch": cfg.arch, **subject.info, "gradcam_size": subject.gradcam_size},
               "main": {cfg.arch: main_json(main)},
               "ablation": {f"{label} @ {size}": {k: summary(v) for k, v in u.scores.items()}
                            for (label, size), u in ablation.items()}}
    return lines, numbers


# ----------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> Config:
    """Command line → Config, with the defaults of the chosen path (synthetic, --quick, --imagenet)."""
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__.split("\n\n")[0],
                                     epilog=f"synthetic defaults: {SYNTHETIC_DEFAULTS}; --quick: {QUICK}; "
                                            f"--imagenet defaults: {IMAGENET_DEFAULTS}")
    parser.add_argument("--quick", action="store_true", help="tiny settings (seconds); temp work dir and output "
                        "unless --work / --out")
    parser.add_argument("--work", type=Path, help="cache of data, checkpoints and units (default runs/faithfulness)")
    parser.add_argument("--out", type=Path, help="markdown output; the .json goes beside it (default "
                        "benchmarks/results/faithfulness.md, faithfulness_imagenet.md with --imagenet)")
    parser.add_argument("--imagenet", type=Path, help="a folder of images: run the paper's ImageNet setting")
    parser.add_argument("--weights", type=Path, help="torchvision state dict for --imagenet (torch.load weights_only)")
    parser.add_argument("--arch", default="resnet50", choices=("resnet50", "vgg19", "resnet18"),
                        help="torchvision architecture of --weights (resnet18: for small stand-ins)")
    parser.add_argument("--archs", help="synthetic: architectures to train (pipeline.models), comma-separated")
    parser.add_argument("--focus-arch", help="synthetic: the model of the ablations, fast vs faithful and the sanity "
                        "check (default resnet18; --quick: small_cnn)")
    parser.add_argument("--epochs", help="synthetic: training epochs per architecture, e.g. resnet18:10,resnet50:8")
    parser.add_argument("--image-size", type=int, help="model input side in pixels")
    parser.add_argument("--dataset-size", type=int, help="synthetic: side of the generated films (ground truth)")
    parser.add_argument("--n-train", type=int, help="synthetic: training films")
    parser.add_argument("--images", type=int, help="images of the main tables")
    for name in ("iterations", "ig-steps", "mask-iterations", "rise-masks", "ig-baseline-steps", "ablation-images",
                 "modes-images", "sanity-images", "explain-batch", "forward-batch", "threads"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--mode", choices=("fast", "faithful"), help="iGOS family mode of the main tables")
    parser.add_argument("--mask-sizes", help="mask sides besides the input size, comma-separated (default 7,14,28)")
    parser.add_argument("--igos-metric-steps", type=int, help="protocol igos: steps (default the paper's ⌊P/50⌋ "
                        "rule, docs/igos.md §7.1)")
    parser.add_argument("--rise-metric-steps", type=int, help="protocol rise: steps (default the input side, as "
                        "RISE's 224 steps at 224 px)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.imagenet is None) != (args.weights is None):
        parser.error("--imagenet and --weights go together")
    if args.imagenet is not None and not (args.imagenet.is_dir() and args.weights.is_file()):
        parser.error(f"--imagenet must be a folder and --weights a file: {args.imagenet}, {args.weights}")
    defaults = dict(IMAGENET_DEFAULTS if args.imagenet else SYNTHETIC_DEFAULTS)
    if args.quick:
        defaults.update(QUICK)

    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return defaults.get(name) if value is None else value

    image_size = int(pick("image_size"))
    sizes = sorted({image_size, *(int(s) for s in str(pick("mask_sizes")).split(",") if int(s) < image_size)},
                   reverse=True)
    archs = [args.arch] if args.imagenet else str(pick("archs")).split(",")
    epochs = {a: int(e) for a, e in (item.split(":") for item in str(pick("epochs") or "").split(",") if item)}
    focus = args.arch if args.imagenet else str(pick("focus_arch"))
    if not args.imagenet:
        if focus not in archs or focus not in CASCADES:
            parser.error(f"--focus-arch must be one of --archs with a randomisation cascade ({', '.join(CASCADES)})")
        if missing := [a for a in archs if a not in epochs]:
            parser.error(f"--epochs lacks {', '.join(missing)}")
    scratch = Path(tempfile.gettempdir())
    stem = "faithfulness_imagenet" if args.imagenet else "faithfulness"
    work = args.work or (Path(tempfile.mkdtemp(prefix="faithfulness-quick-")) if args.quick
                         else ROOT / "runs" / "faithfulness")
    return Config(
        imagenet=args.imagenet, weights=args.weights, arch=args.arch, work=work,
        out=args.out or (scratch / f"{stem}_quick.md" if args.quick else RESULTS / f"{stem}.md"), quick=args.quick,
        image_size=image_size, dataset_size=int(pick("dataset_size") or image_size), n_train=int(pick("n_train") or 0),
        images=int(pick("images")), archs=archs, epochs=epochs, iterations=int(pick("iterations")),
        ig_steps=int(pick("ig_steps")), mask_iterations=int(pick("mask_iterations")),
        rise_masks=int(pick("rise_masks")), ig_baseline_steps=int(pick("ig_baseline_steps")), mode=str(pick("mode")),
        mask_sizes=sizes, ablation_images=int(pick("ablation_images")), modes_images=int(pick("modes_images") or 0),
        sanity_images=int(pick("sanity_images") or 0), focus_arch=focus,
        igos_metric_steps=pick("igos_metric_steps"), rise_metric_steps=int(pick("rise_metric_steps") or image_size),
        explain_batch=int(pick("explain_batch")), forward_batch=int(pick("forward_batch")),
        threads=int(pick("threads")), seed=args.seed,
        command=command_line(__file__, argv))


def finite_or_none(value: Any) -> Any:
    """JSON-safe copy: NaN and inf become null, numpy/torch scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic | Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its markdown and JSON."""
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    runner = Runner(cfg)
    load_start = load_average()
    run: Callable[[Config, Runner], tuple[list[str], dict[str, Any]]] = run_imagenet if cfg.imagenet else run_synthetic
    body, numbers = run(cfg, runner)
    seconds = time.perf_counter() - runner.started
    title = "# Faithfulness: insertion/deletion, ablations" + (
        " on ImageNet (the paper's setting)" if cfg.imagenet else ", ground truth and sanity on synthetic radiographs")
    lines = [title + (" (--quick: tiny settings, not a measurement to quote)" if cfg.quick else ""), ""]
    lines += machine_lines(cfg, (load_start, load_average()), seconds) + settings_lines(cfg) + [""] + body
    report = "\n".join(lines) + "\n"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()}
    document = {"settings": settings, "torch": torch.__version__, "threads": torch.get_num_threads(),
                "cpu_cores": os.cpu_count(), "date": now(), "seconds": seconds, **numbers}
    write_results(cfg.out, finite_or_none(document), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
