"""Classifier checkpoints: weights in safetensors (no pickle) beside a JSON file of metadata.

A checkpoint is two files: `<name>.safetensors` (the state dict, with the sha256 of its tensors in the
file's own metadata) and `<name>.json` (`CheckpointMeta`: architecture, class order, input size and
normalisation, seed, training-split hash, validation metrics). `load_checkpoint` reads the weights
without unpickling anything, rebuilds the model from the metadata and refuses a checkpoint whose class
order or architecture differs from what the caller expects, or whose files are unreadable or corrupt
(tensors that no longer match their sha256), with a `CheckpointError` that names the file.

`model_input` turns radiographs into what the model was trained on: resize to `image_size`
(antialiased bilinear) and normalise as (x − mean) / std.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from datasets.atomic import atomic_path, write_text
from pipeline.models import ARCHITECTURES, build_classifier

# Model-input normalisation: (x − 0.5) / 0.225 puts [0, 1] radiographs on the ImageNet-like scale the
# iGOS++ defaults (noise std 0.2, BTV σ 0.01) were set for.
INPUT_MEAN, INPUT_STD = 0.5, 0.225


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not the model the caller expects."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint is: enough to rebuild the model and feed it the right input.

    labels: the class of each output index. image_size: the side (pixels) images are resized to.
    mean, std: input normalisation on [0, 1] pixels. train_sha256: hash of the training data (split-file lines
    and image bytes), so a checkpoint can be traced to its data. validation: metrics of the selected epoch
    and the number of validation images they rest on ("images").
    """

    architecture: str
    labels: tuple[str, ...]
    image_size: int
    in_channels: int = 1
    mean: float = INPUT_MEAN
    std: float = INPUT_STD
    seed: int = 0
    train_sha256: str = ""
    validation: dict[str, float] = field(default_factory=dict)
    epoch: int = 0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "labels": list(self.labels)}, indent=1) + "\n"


def weights_path(path: str | Path) -> Path:
    """The `.safetensors` file of a checkpoint given by either of its two files or its stem."""
    path = Path(path)
    return path.with_suffix(".safetensors") if path.suffix in (".json", "") else path


def save_checkpoint(model: nn.Module, meta: CheckpointMeta, path: str | Path) -> Path:
    """Write `path` (.safetensors) and its `.json` metadata atomically; returns the weights path."""
    weights = weights_path(path)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(weights) as temporary:
        save_file(state, str(temporary), metadata={"architecture": meta.architecture, "sha256": state_sha256(state)})
    write_text(weights.with_suffix(".json"), meta.to_json())
    return weights


def read_meta(path: str | Path) -> CheckpointMeta:
    """The metadata of a checkpoint; CheckpointError when it is missing or malformed."""
    meta_path = weights_path(path).with_suffix(".json")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
        meta = CheckpointMeta(**{**data, "labels": tuple(data["labels"])})
    except FileNotFoundError as error:
        raise CheckpointError(meta_path, "checkpoint metadata not found (expected beside the .safetensors "
                              "file, written by pipeline.train)") from error
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(meta_path, f"malformed checkpoint metadata: {error}") from error
    if meta.architecture not in ARCHITECTURES:
        raise CheckpointError(meta_path, f"unknown architecture {meta.architecture!r}; known: {ARCHITECTURES}")
    return meta


def load_checkpoint(
    path: str | Path, *, labels: Sequence[str] | None = None, architecture: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, CheckpointMeta]:
    """The model in eval mode with its weights, and its metadata.

    labels / architecture: what the caller expects; a checkpoint with another class order or another
    architecture raises CheckpointError (a model for other classes must never be used silently).
    """
    weights = weights_path(path)
    meta = read_meta(weights)
    if labels is not None and tuple(labels) != meta.labels:
        raise CheckpointError(weights, f"class order {list(meta.labels)} does not match the data's {list(labels)}: "
                              "retrain, or pass data with these labels")
    if architecture is not None and architecture != meta.architecture:
        raise CheckpointError(weights, f"architecture {meta.architecture!r} is not the expected {architecture!r}: "
                              f"pass a checkpoint of a {architecture}, or retrain")
    try:
        with safe_open(str(weights), framework="pt", device=str(device)) as handle:
            recorded = (handle.metadata() or {}).get("sha256")
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except FileNotFoundError as error:
        raise CheckpointError(weights, "checkpoint weights not found") from error
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(weights, f"unreadable weights (corrupt or not safetensors): {error}; retrain, or "
                              "restore the file") from error
    if recorded is not None and state_sha256(state) != recorded:
        raise CheckpointError(weights, "corrupt weights: the tensors do not match the sha256 recorded when they were "
                              "saved; retrain, or restore the file")
    model = build_classifier(meta.architecture, len(meta.labels), meta.in_channels)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(weights, f"weights do not fit a {meta.architecture} with {len(meta.labels)} classes: "
                              f"{str(error).splitlines()[0]}") from error
    return model.to(device).eval(), meta


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict: each tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def checkpoint_digest(path: str | Path) -> str:
    """sha256 of the weights and metadata files: the identity of a trained model for cache keys."""
    digest = hashlib.sha256()
    weights = weights_path(path)
    for part in (weights, weights.with_suffix(".json")):
        digest.update(part.read_bytes())
    return digest.hexdigest()


def model_input(images: torch.Tensor, meta: CheckpointMeta) -> torch.Tensor:
    """Radiographs (n, 1, H, W) or (n, H, W) in [0, 1] → model input (n, 1, S, S), S = meta.image_size."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    images = images.float()
    if images.shape[-2:] != (meta.image_size, meta.image_size):
        images = nn.functional.interpolate(images, size=(meta.image_size, meta.image_size), mode="bilinear",
                                           align_corners=False, antialias=True)
    return (images - meta.mean) / meta.std
