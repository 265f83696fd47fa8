"""The faithfulness benchmark's subjects (`python -m benchmarks.faithfulness`): on the synthetic path a classifier
trained here (checkpoint cached under --work) with the first `test` images, their lesions, text boxes and which
predictions flip when the text alone is removed; on the ImageNet path a torchvision model with the weights file
and the folder's images, prepared as in the paper."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor, nn

import igos
from benchmarks.common import IMAGENET_MEAN, IMAGENET_STD
from benchmarks.faithfulness_units import Config, Runner, Subject, Truth
from datasets import synthetic
from datasets.atomic import sha256_of, write_text
from datasets.images import read_image
from pipeline.audit import AuditConfig
from pipeline.checkpoint import checkpoint_digest, load_checkpoint, model_input
from pipeline.inputs import load_resized
from pipeline.text import TextBox, box_mask
from pipeline.train import TrainConfig, records_sha256, train_classifier

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


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

