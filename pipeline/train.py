"""Train a classifier on COVIDx records: validation carved from train by patient, best epoch on validation.

`train_classifier` preloads every readable image once (resized, uint8), carves a validation split from
the training records by patient (`datasets.covidx.split_by_patient`; the test split is never used to
select anything), trains with Adam, keeps the epoch with the best validation macro-F1 and writes it
with `pipeline.checkpoint.save_checkpoint`, plus `<name>_history.csv` (one row per epoch, the columns
of docs/run-directory.md). Images that cannot be read are skipped and returned as rejects.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from datasets.atomic import sha256_of, write_text
from datasets.covidx import LABELS_3CLASS, Record, split_by_patient
from datasets.rejects import Rejected
from pipeline.checkpoint import CheckpointMeta, load_checkpoint, model_input, save_checkpoint
from pipeline.inputs import label_order, load_resized, logits_of
from pipeline.models import ARCHITECTURES, build_classifier

LOG = logging.getLogger(__name__)

CLASS_WEIGHTINGS = ("balanced", "covidnext", "none", "sampler")
SCHEDULES = ("plateau", "onecycle")
FEW_VALIDATION_IMAGES = 30  # an epoch chosen on fewer validation images is flagged (log and report)
# COVID-Next-Pytorch's cross-entropy weights for (normal, pneumonia, COVID-19).
COVIDNEXT_WEIGHTS = (0.05, 0.05, 1.0)
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_covid_recall",
                   "learning_rate", "seconds")
# Augmentation ranges (those of datasets.torch_dataset.default_transform): rotation ±5°, shift ±4 % of the side,
# scale 0.95–1.05, brightness and contrast ±10 %. No flips: a flip moves the heart to the wrong side and
# mirrors the laterality markers ("L" / "R"), so a flipped film is no longer a plausible radiograph.
AUGMENT_DEGREES, AUGMENT_SHIFT, AUGMENT_SCALE, AUGMENT_JITTER = 5.0, 0.04, 0.05, 0.1


@dataclass(frozen=True)
class TrainConfig:
    """How to train one classifier; the defaults are for real COVIDx data on a GPU.

    architecture: one of pipeline.models.ARCHITECTURES. image_size: side (pixels) images are resized to.
    class_weighting: "balanced" (cross-entropy weights n / (k · n_class)), "covidnext" (the reference
    recipe's fixed [0.05, 0.05, 1.0], 3-class data only), "none", or "sampler" (unweighted loss, batches
    drawn with replacement, each class equally likely). val_fraction: share of the training *patients*
    held out for validation. patience: epochs without a better validation macro-F1 before stopping.
    schedule: "plateau" (ReduceLROnPlateau on validation macro-F1: halve the rate after
    max(1, patience // 3) epochs without progress) or "onecycle" (OneCycleLR over `epochs`: a fixed budget
    that ends at a low rate, for short CPU runs; on the synthetic demo at 12 epochs both reach about the
    same scores). augment: mild random affine and brightness/contrast, no
    flips. init_checkpoint: a local checkpoint (pipeline.checkpoint) to start from; nothing is downloaded.
    seed: in [0, 2**32 - 1]. mixed_precision: run the forward passes and the loss (training and validation)
    under torch.autocast(bfloat16) on the training device (CUDA or CPU): faster on GPUs with bfloat16 tensor
    cores, no gradient scaler needed (bfloat16 has float32's exponent range); the weights, their gradients,
    the optimiser state and the checkpoint stay float32. False (the default): float32 throughout.
    """

    architecture: str = "resnet18"
    image_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    class_weighting: str = "balanced"
    val_fraction: float = 0.1
    patience: int = 6
    schedule: str = "plateau"
    augment: bool = True
    seed: int = 0
    init_checkpoint: str | None = None
    mixed_precision: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.mixed_precision, bool):
            problems.append(f"mixed_precision must be true or false, got {self.mixed_precision!r}")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture {self.architecture!r} is not one of {ARCHITECTURES}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            problems.append(f"class_weighting {self.class_weighting!r} is not one of {CLASS_WEIGHTINGS}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule {self.schedule!r} is not one of {SCHEDULES}")
        if not 16 <= self.image_size <= 2048:
            problems.append(f"image_size must be in [16, 2048] pixels, got {self.image_size}")
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1:
            problems.append(f"epochs and patience must be >= 1 and batch_size >= 2, got epochs={self.epochs}, "
                            f"batch_size={self.batch_size}, patience={self.patience}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning_rate must be a positive number, got {self.learning_rate}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.val_fraction <= 0.5:
            problems.append(f"val_fraction must be in (0, 0.5] (a validation split is required), got "
                            f"{self.val_fraction}")
        if not 0 <= self.seed <= 2**32 - 1:
            problems.append(f"seed must be in [0, 2**32 - 1], got {self.seed}")
        if self.init_checkpoint is not None and (not self.init_checkpoint or "://" in self.init_checkpoint):
            problems.append(f"init_checkpoint must be a local checkpoint path (nothing is downloaded), got "
                            f"{self.init_checkpoint!r}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))


@dataclass
class TrainResult:
    """What training wrote and how it went.

    checkpoint: the .safetensors path (metadata beside it); history: one row per epoch (HISTORY_COLUMNS);
    epoch: the selected (best validation macro-F1) epoch, 1-based; validation: its metrics (loss,
    accuracy, macro_f1, covid_recall) and the validation split's size (images); validation_filenames: the
    held-out images; rejected: unreadable images; seconds: wall time including preloading.
    """

    checkpoint: Path
    history_csv: Path
    history: pd.DataFrame
    epoch: int
    validation: dict[str, float]
    n_train: int
    validation_filenames: tuple[str, ...]
    rejected: list[Rejected]
    seconds: float


def positive_label(labels: Sequence[str]) -> str:
    """The class whose recall is reported as `covid_recall`: COVID-19 (3-class) or positive (binary)."""
    return "COVID-19" if "COVID-19" in labels else "positive"


def records_sha256(records: Sequence[Record]) -> str:
    """sha256 of the training data: each record's split-file line and its image file's sha256, in order.

    The image bytes count too: COVIDx++ has the very split-file lines of its source, with other pixels.
    An image that cannot be read contributes "unreadable".
    """
    digest = hashlib.sha256()
    for record in records:
        try:
            image = sha256_of(record.path) if record.path is not None else "no path"
        except OSError:
            image = "unreadable"
        digest.update(f"{record.to_line()}\t{image}\n".encode())
    return digest.hexdigest()


def preload(records: Sequence[Record], size: int) -> tuple[torch.Tensor, list[int], list[Rejected]]:
    """Read every image once: ((n_ok, size, size) uint8, positions in `records` of those read, rejects).

    Memory: n · size² bytes (30,000 images at 224 px: 1.5 GB; 450 at 128 px: 7.4 MB). uint8 rounds the
    pixels to 1/255, the precision of the 8-bit PNG/JPEG most datasets store.
    """
    images = torch.empty((len(records), size, size), dtype=torch.uint8)
    kept: list[int] = []
    rejected: list[Rejected] = []
    for index, record in enumerate(records):
        try:
            image = load_resized(record, size)
        except (OSError, ValueError) as error:
            rejected.append(Rejected.of(record.filename, error))
            LOG.warning("skipping %s: %s", record.filename, error)
            continue
        images[len(kept)] = (image * 255).round().to(torch.uint8)
        kept.append(index)
    return images[: len(kept)].clone(), kept, rejected


def class_weights(targets: torch.Tensor, labels: Sequence[str], weighting: str) -> torch.Tensor | None:
    """Cross-entropy weights (k,) for `weighting`, or None for an unweighted loss ("none", "sampler").

    "balanced": n / (k · n_c), 0 for a class without images; "covidnext": COVIDNEXT_WEIGHTS.
    """
    if weighting in ("none", "sampler"):
        return None
    if weighting == "covidnext":
        if tuple(labels) != LABELS_3CLASS:
            raise ValueError(f"class_weighting 'covidnext' needs the 3-class labels {LABELS_3CLASS}, got {labels}")
        return torch.tensor(COVIDNEXT_WEIGHTS)
    counts = torch.bincount(targets, minlength=len(labels)).float()
    return torch.where(counts > 0, len(targets) / (len(labels) * counts.clamp(min=1)), 0.0)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild random affine and brightness/contrast per image, no flips: (B, 1, S, S) in [0, 1] → same.

    Draws only from `generator`, so a seeded run is reproducible.
    """
    count = len(images)

    def uniform(half_width: float) -> torch.Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * half_width

    angle = torch.deg2rad(uniform(AUGMENT_DEGREES))
    scale = 1 + uniform(AUGMENT_SCALE)
    shift = torch.stack([uniform(2 * AUGMENT_SHIFT), uniform(2 * AUGMENT_SHIFT)], 1)  # grid units: side = 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    moved = nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    brightness = (1 + uniform(AUGMENT_JITTER)).view(-1, 1, 1, 1)
    contrast = (1 + uniform(AUGMENT_JITTER)).view(-1, 1, 1, 1)
    mean = moved.mean(dim=(1, 2, 3), keepdim=True)
    return ((moved * brightness - mean * brightness) * contrast + mean * brightness).clamp(0, 1)


def scores(logits: torch.Tensor, targets: torch.Tensor, labels: Sequence[str]) -> dict[str, float]:
    """loss (unweighted cross-entropy), accuracy, macro_f1, covid_recall of logits (n, k) against targets (n,).

    macro_f1 averages the F1 of the classes present in targets or predictions (0 where undefined).
    """
    k = len(labels)
    predicted = logits.argmax(dim=1)
    confusion = torch.bincount(targets * k + predicted, minlength=k * k).view(k, k).double()
    true_positive, actual, claimed = confusion.diag(), confusion.sum(1), confusion.sum(0)
    f1 = torch.where(actual + claimed > 0, 2 * true_positive / (actual + claimed).clamp(min=1), 0.0)
    positive = list(labels).index(positive_label(labels))
    return {
        "loss": float(nn.functional.cross_entropy(logits, targets)),
        "accuracy": float((predicted == targets).double().mean()),
        "macro_f1": float(f1[(actual + claimed) > 0].mean()),
        "covid_recall": float(true_positive[positive] / actual[positive]) if actual[positive] else float("nan"),
    }


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on `device`'s type when `enabled` (TrainConfig.mixed_precision), else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def train_classifier(
    records: Sequence[Record], out_path: str | Path, config: TrainConfig, *,
    progress: Callable[[Mapping[str, float]], None] | None = None, device: str | torch.device | None = None,
) -> TrainResult:
    """Train `config.architecture` on `records` (a training split with image paths) and write the best epoch.

    Writes `out_path` (.safetensors) and its .json (CheckpointMeta: labels in LABELS_3CLASS or
    LABELS_BINARY order, train_sha256 = records_sha256(records), the selected epoch's validation
    metrics), and `<stem>_history.csv` beside it after every epoch. The selected epoch has the highest
    validation macro-F1 (ties: lower validation loss, then the earlier epoch); training stops after
    `patience` epochs without a better one. `progress` is called with each epoch's history row.
    Deterministic on CPU for a given seed and thread count. device: default CUDA when available.
    config.mixed_precision: bfloat16 autocast around the forward passes and the loss; the checkpoint is float32.
    Memory: the preloaded images, n · image_size² bytes (see `preload`), plus the model.
    """
    started = time.perf_counter()
    out_path = Path(out_path).with_suffix(".safetensors")
    history_csv = out_path.with_name(f"{out_path.stem}_history.csv")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    labels = label_order(records)
    images, kept, rejected = preload(records, config.image_size)
    readable = [records[index] for index in kept]
    train_records, validation_records = split_by_patient(readable, fraction=config.val_fraction, seed=config.seed)
    if not train_records or not validation_records:
        raise ValueError(f"{len(readable)} readable images ({len(rejected)} rejected) give {len(train_records)} "
                         f"training and {len(validation_records)} validation images: need both (more patients per "
                         "label, or another val_fraction)")
    if len(validation_records) < FEW_VALIDATION_IMAGES:
        LOG.warning("%s: the epoch is chosen on a validation split of %d images (fewer than %d): that choice and the "
                    "validation metrics rest on too few images to mean much", out_path.name, len(validation_records),
                    FEW_VALIDATION_IMAGES)
    in_validation = {record.filename for record in validation_records}
    is_validation = torch.tensor([record.filename in in_validation for record in readable])
    targets = torch.tensor([labels.index(record.label) for record in readable])
    train_images, train_targets = images[~is_validation], targets[~is_validation]
    validation_images, validation_targets = images[is_validation], targets[is_validation]
    meta = CheckpointMeta(config.architecture, labels, config.image_size, seed=config.seed,
                          train_sha256=records_sha256(records))

    torch.manual_seed(config.seed)
    if config.init_checkpoint is None:
        model = build_classifier(config.architecture, len(labels))
    else:
        model, _ = load_checkpoint(config.init_checkpoint, labels=labels, architecture=config.architecture)
    model.to(device)
    weights = class_weights(train_targets, labels, config.class_weighting)
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    batches = -(-len(train_targets) // config.batch_size)
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate,
                                                        total_steps=config.epochs * batches)
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                               patience=max(1, config.patience // 3))
    generator = torch.Generator().manual_seed(config.seed)
    sampling = (1 / torch.bincount(train_targets, minlength=len(labels)).clamp(min=1).float())[train_targets]

    rows: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    best_row: dict[str, float] = {}
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        learning_rate = optimizer.param_groups[0]["lr"]
        if config.class_weighting == "sampler":
            order = torch.multinomial(sampling, len(train_targets), replacement=True, generator=generator)
        else:
            order = torch.randperm(len(train_targets), generator=generator)
        model.train()
        total_loss, seen = 0.0, 0
        for batch in order.split(config.batch_size):
            if len(batch) < 2:  # BatchNorm cannot train on a single image (resnets end on a 1×1 map at 32 px)
                continue
            pixels = train_images[batch].unsqueeze(1).float() / 255
            if config.augment:
                pixels = augment(pixels, generator)
            optimizer.zero_grad()
            with autocast(device, config.mixed_precision):
                loss = criterion(model(model_input(pixels, meta).to(device)), train_targets[batch].to(device))
            loss.backward()
            optimizer.step()
            if config.schedule == "onecycle":
                scheduler.step()
            total_loss, seen = total_loss + loss.item() * len(batch), seen + len(batch)
        with autocast(device, config.mixed_precision):  # logits_of returns float32 logits either way
            logits = logits_of(model, validation_images, meta, config.batch_size, device)
        metrics = scores(logits, validation_targets, labels)
        if config.schedule == "plateau":
            scheduler.step(metrics["macro_f1"])
        row = {"epoch": epoch, "train_loss": total_loss / seen,
               **{f"val_{name}": value for name, value in metrics.items()},
               "learning_rate": learning_rate, "seconds": time.perf_counter() - epoch_start}
        rows.append(row)
        write_text(history_csv, pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(index=False))
        LOG.info("epoch %d: train loss %.4f, validation macro-F1 %.3f, loss %.4f", epoch, row["train_loss"],
                 metrics["macro_f1"], metrics["loss"])
        if progress is not None:
            progress(row)
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"{out_path}: training diverged at epoch {epoch} (loss {row['train_loss']}): "
                                     "lower learning_rate")
        key = (metrics["macro_f1"], -metrics["loss"])
        if best is None or key > best:
            best, best_row = key, row
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - int(best_row["epoch"]) >= config.patience:
            LOG.info("early stop at epoch %d: no better validation macro-F1 since epoch %d", epoch, best_row["epoch"])
            break

    model.load_state_dict(best_state)
    validation = {name: float(best_row[f"val_{name}"]) for name in ("loss", "accuracy", "macro_f1", "covid_recall")}
    validation["images"] = float(len(validation_records))
    meta = replace(meta, validation=validation, epoch=int(best_row["epoch"]))
    checkpoint = save_checkpoint(model, meta, out_path)
    return TrainResult(checkpoint, history_csv, pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)),
                       int(best_row["epoch"]), validation, len(train_targets),
                       tuple(record.filename for record in validation_records), rejected,
                       time.perf_counter() - started)

