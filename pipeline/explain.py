"""Explain a classifier on a split with iGOS++: saliency maps in chunks, with insertion/deletion AUCs.

Writes, in the run directory `out_dir` (see docs/run-directory.md):

    explain/<m>/chunk_<k>.npz   `saliency` (n, s, s) float32 in [0, 1] (higher = more important; iGOS++
                                `1 − m_d ⊙ m_i`, min–max normalised per image), `filenames` (n,), and what the
                                index and the resume check need: the per-image index columns, the chunk's
                                rejected images (filename, reason, transient) and `input_hash`
    explain/<m>/index.csv       `filename, split, chunk, row, target, target_label, target_probability,
                                insertion_auc, deletion_auc, seconds`
    explain/<m>/rejected.csv    `stage, split, filename, reason` of the images that could not be explained
                                (the flow merges it into the run's rejected.csv)

Records are cut, in order, into chunks of `ExplainConfig.chunk_size`. A chunk whose npz exists and holds
the same `input_hash` (checkpoint digest + every config field that changes a map + the chunk's filenames and
image sha256s) is not recomputed, so a killed run resumes where it stopped and a rerun recomputes nothing.
`explain_chunk` does one chunk (a flow may submit chunks as independent tasks) and `collect_index` writes
the index from the chunk files.

Every image has its own seed (`config.seed` + a stable hash of its filename), so its map does not depend on
the chunk or batch it falls in (on the CPU igos gives a batch the maps of single calls).

`explain/<m>/` holds the explanation of one split: explaining another split with the same model replaces it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import igos
from datasets.atomic import atomic_path, file_sha256, write_text
from datasets.covidx import Record
from datasets.errors import DatasetError
from datasets.images import read_image
from datasets.rejects import REJECTED_COLUMNS, Rejected
from pipeline.checkpoint import CheckpointMeta, checkpoint_digest, load_checkpoint, model_input, weights_path

LOG = logging.getLogger(__name__)

STAGE = "explain"
# The iGOS family: the methods whose map is 1 − Π masks and that take mode / iterations / ig_steps.
METHODS = ("igos++", "igos+", "igos", "igos-insertion")
TARGETS = ("predicted", "label")
PRECISIONS = ("fp32", "bf16")  # igos.explain's `precision`
INDEX_COLUMNS = ("filename", "split", "chunk", "row", "target", "target_label", "target_probability",
                 "insertion_auc", "deletion_auc", "seconds")
INDEX = "index.csv"
REJECTED = "rejected.csv"
_ROUND = 6


class ExplainError(ValueError):
    """Explanation cannot run as asked (configuration, checkpoint, output folder)."""


@dataclass(frozen=True)
class ExplainConfig:
    """How a split is explained.

    method: an iGOS-family method of `igos` ("igos++" default: deletion and insertion masks).
    mask_size: side s of the s×s mask (28: the paper's setting); at most the checkpoint's input size (an audit
        config checks it against train.image_size) and 2048, the largest one.
    mode, iterations, ig_steps: iGOS options (docs/igos-usage.md, `igos.IGOSOptions`): "fast" / "faithful", K, N.
    target: "predicted" explains each image's top-1 class, "label" its true class.
    batch_size: images per igos call (memory; does not change the maps on the CPU).
    chunk_size: images per chunk file: the unit of resume and of work a flow submits.
    seed: base seed in [0, 2**32 - 1]; image seeds are seed + a stable hash of the filename.
    device: torch device the model and images are put on ("cpu", "cuda").
    precision: "fp32" (default) or "bf16": igos runs the model's forward and backward passes under
        torch.autocast(bfloat16) (masks, scores and the line search stay float32; insertion/deletion AUCs are
        always computed in float32). For GPUs with bfloat16 tensor cores; the maps differ slightly from fp32
        (speed and map agreement measured in benchmarks/results/igos_gpu.md).
    """

    method: str = "igos++"
    mask_size: int = 28
    mode: str = "fast"
    iterations: int = 20
    ig_steps: int = 15
    target: str = "predicted"
    batch_size: int = 16
    chunk_size: int = 64
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ExplainError(f"method must be one of {METHODS} (mask methods with a 1 − Π masks map), "
                               f"got {self.method!r}")
        if self.mode not in ("fast", "faithful"):
            raise ExplainError(f"mode must be 'fast' or 'faithful', got {self.mode!r}")
        if self.target not in TARGETS:
            raise ExplainError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.precision not in PRECISIONS:
            raise ExplainError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("mask_size", "iterations", "ig_steps", "batch_size", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ExplainError(f"{name} must be an integer >= 1, got {value!r}")
        if self.mask_size > 2048:
            raise ExplainError(f"mask_size must be at most 2048 (the largest image_size), got {self.mask_size}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= 2**32 - 1:
            raise ExplainError(f"seed must be an integer in [0, 2**32 - 1], got {self.seed!r}")

    def digest(self) -> str:
        """Hash of every field that changes a map (batch_size and chunk_size do not: chunk contents are hashed).
        precision counts only when it is not "fp32", so chunks written before the field existed stay valid."""
        fields = {key: value for key, value in asdict(self).items() if key not in ("batch_size", "chunk_size")}
        if fields["precision"] == "fp32":
            del fields["precision"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ChunkResult:
    """One chunk: its file, whether it was computed now (False: reused), images explained, and the rejected
    images."""

    chunk: int
    path: Path
    computed: bool
    explained: int
    rejected: tuple[Rejected, ...]


@dataclass(frozen=True)
class ExplainResult:
    """explain_dir: explain/<m>/; index: the index.csv table; rejected: the rejected.csv table."""

    explain_dir: Path
    index: pd.DataFrame
    rejected: pd.DataFrame
    chunks: tuple[ChunkResult, ...]
    seconds: float

    @property
    def computed(self) -> int:
        """Chunks computed by this call (the rest were reused)."""
        return sum(chunk.computed for chunk in self.chunks)


LoadedModel = tuple[nn.Module, CheckpointMeta]


def explain_dir_of(out_dir: str | Path, checkpoint: str | Path, name: str | None = None) -> Path:
    """`out_dir/explain/<m>`; `m` is `name` or the checkpoint's stem (models/a.safetensors → "a")."""
    return Path(out_dir) / "explain" / (name or weights_path(checkpoint).stem)


def chunk_records(records: Sequence[Record], chunk_size: int) -> list[list[Record]]:
    """The records cut, in order, into consecutive chunks of `chunk_size` (the last may be shorter)."""
    return [list(records[start:start + chunk_size]) for start in range(0, len(records), chunk_size)]


def chunk_path(explain_dir: str | Path, chunk: int) -> Path:
    """The file of chunk `chunk`: explain_dir/chunk_<k>.npz."""
    return Path(explain_dir) / f"chunk_{chunk}.npz"


def image_seed(seed: int, filename: str) -> int:
    """The seed of one image: `seed` + a stable 31-bit hash of its filename (independent of chunk and batch)."""
    return seed + int.from_bytes(hashlib.sha256(filename.encode()).digest()[:4], "big") % 2**31


def chunk_hash(digest: str, config: ExplainConfig, records: Sequence[Record], split: str) -> str:
    """The input hash of a chunk: checkpoint digest, config, split, and each image's filename and sha256."""
    payload = hashlib.sha256(f"{digest}\n{config.digest()}\n{split}\n".encode())
    for record in records:
        payload.update(f"{record.filename}\t{record.label}\t{file_sha256(record.path)}\n".encode())
    return payload.hexdigest()


def explain_chunk(
    checkpoint: str | Path, records: Sequence[Record], out_dir: str | Path, config: ExplainConfig, *, split: str,
    chunk: int, name: str | None = None, loader: Callable[[], LoadedModel] | None = None,
) -> ChunkResult:
    """Explain one chunk of records into explain/<m>/chunk_<chunk>.npz unless it is already done.

    records: this chunk's records (see `chunk_records`), each with its image `path`. loader: returns the
    model and metadata of `checkpoint` (a caller explaining many chunks passes a cached one); called only
    when the chunk must be computed. Unreadable images and labels the checkpoint does not know are
    recorded as rejects; a stored chunk with a transient I/O reject (datasets.rejects) is computed again, as
    is one stored without the rejects' `transient` flags.
    """
    path = chunk_path(explain_dir_of(out_dir, checkpoint, name), chunk)
    expected = chunk_hash(checkpoint_digest(checkpoint), config, records, split)
    stored = _read_chunk(path)
    if (stored is not None and str(stored["input_hash"]) == expected and "rejected_transient" in stored
            and not stored["rejected_transient"].any()):
        rejected = map(Rejected, stored["rejected_filenames"].tolist(), stored["rejected_reasons"].tolist())
        return ChunkResult(chunk, path, False, len(stored["filenames"]), tuple(rejected))
    model, meta = loader() if loader is not None else load_checkpoint(checkpoint, device=config.device)
    images, kept, rejected = _read_inputs(records, meta, config)
    arrays = _explain_images(model, meta, images, kept, config)
    arrays.update(input_hash=np.array(expected), split=np.array(split),
                  rejected_filenames=np.array([item.filename for item in rejected], dtype=str),
                  rejected_reasons=np.array([item.reason for item in rejected], dtype=str),
                  rejected_transient=np.array([item.transient for item in rejected], dtype=bool))
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        np.savez(handle, **arrays)
    LOG.info("%s: %d explained, %d rejected", path, len(kept), len(rejected))
    return ChunkResult(chunk, path, True, len(kept), tuple(rejected))


def collect_index(explain_dir: str | Path, n_chunks: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write index.csv and rejected.csv of explain_dir from chunks 0 … n_chunks − 1; delete later chunk files.

    Returns the two tables. Raises ExplainError when a chunk file is missing or unreadable.
    """
    explain_dir = Path(explain_dir)
    index, rejected = [], []
    for chunk in range(n_chunks):
        stored = _read_chunk(chunk_path(explain_dir, chunk))
        if stored is None:
            raise ExplainError(f"{chunk_path(explain_dir, chunk)}: chunk missing or unreadable: run explain_chunk")
        table = pd.DataFrame({column: stored[column] for column in INDEX_COLUMNS[4:]})
        table.insert(0, "filename", stored["filenames"].astype(str))
        table.insert(1, "split", str(stored["split"]))
        table.insert(2, "chunk", chunk)
        table.insert(3, "row", np.arange(len(table)))
        index.append(table)
        rejected.append(pd.DataFrame({"stage": STAGE, "split": str(stored["split"]),
                                      "filename": stored["rejected_filenames"].astype(str),
                                      "reason": stored["rejected_reasons"].astype(str)}))
    for stale in explain_dir.glob("chunk_*.npz"):
        suffix = stale.stem.removeprefix("chunk_")
        if suffix.isdigit() and int(suffix) >= n_chunks:
            stale.unlink()
    index_table = pd.concat(index, ignore_index=True) if index else pd.DataFrame(columns=INDEX_COLUMNS)
    rejected_table = pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame(columns=REJECTED_COLUMNS)
    write_text(explain_dir / INDEX, index_table.to_csv(index=False, lineterminator="\n"))
    write_text(explain_dir / REJECTED, rejected_table.to_csv(index=False, lineterminator="\n"))
    return index_table, rejected_table


def explain_split(
    checkpoint: str | Path, records: Sequence[Record], out_dir: str | Path, config: ExplainConfig, *, split: str,
    progress: Callable[[int], None] | None = None, name: str | None = None,
) -> ExplainResult:
    """Explain every record of `split` with the classifier at `checkpoint`, chunk by chunk, resumably.

    out_dir: the run directory; files go to out_dir/explain/<m>/ (`m`: `name` or the checkpoint stem).
    progress(n): called after each chunk with its number of records.
    """
    started = time.perf_counter()
    if len({record.filename for record in records}) != len(records):
        raise ExplainError(f"split {split!r}: duplicate filenames: each image must be explained once")
    if any(record.path is None for record in records):
        raise ExplainError(f"split {split!r}: records without an image path (read the split with its image folder)")
    loader = functools.cache(functools.partial(load_checkpoint, checkpoint, device=config.device))
    chunks = []
    for k, part in enumerate(chunk_records(records, config.chunk_size)):
        chunks.append(explain_chunk(checkpoint, part, out_dir, config, split=split, chunk=k, name=name, loader=loader))
        if progress is not None:
            progress(len(part))
    explain_dir = explain_dir_of(out_dir, checkpoint, name)
    index, rejected = collect_index(explain_dir, len(chunks))
    return ExplainResult(explain_dir, index, rejected, tuple(chunks), time.perf_counter() - started)


def load_saliency(explain_dir: str | Path) -> dict[str, np.ndarray]:
    """filename → saliency (s, s) float32 in [0, 1] of every image in explain_dir's index.csv."""
    explain_dir = Path(explain_dir)
    try:
        index = pd.read_csv(explain_dir / INDEX, dtype={"filename": str})
    except FileNotFoundError as error:
        raise ExplainError(f"{explain_dir / INDEX}: no index: explain the split first") from error
    maps: dict[str, np.ndarray] = {}
    for chunk, rows in index.groupby("chunk"):
        stored = _read_chunk(chunk_path(explain_dir, int(chunk)))
        if stored is None:
            raise ExplainError(f"{chunk_path(explain_dir, int(chunk))}: chunk listed in {INDEX} is missing or corrupt")
        for filename, row in zip(rows["filename"], rows["row"], strict=True):
            if str(stored["filenames"][row]) != filename:
                raise ExplainError(f"{chunk_path(explain_dir, int(chunk))}: row {row} is not {filename}: "
                                   f"{INDEX} and the chunk disagree (rerun the explanation)")
            maps[filename] = stored["saliency"][row]
    return maps


# ---- internals ------------------------------------------------------------------------------------


def _read_chunk(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a chunk file, or None when it is missing or unreadable (it is then recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        LOG.warning("%s: unreadable chunk (%s): recomputing it", path, error)
        return None


def _read_inputs(records: Sequence[Record], meta: CheckpointMeta, config: ExplainConfig
                 ) -> tuple[torch.Tensor, list[tuple[Record, int]], list[Rejected]]:
    """Model inputs (n, 1, S, S) of the readable records, [(record, target or −1 for predicted)], rejects."""
    inputs, kept, rejected = [], [], []
    for record in records:
        if config.target == "label" and record.label not in meta.labels:
            rejected.append(Rejected(record.filename,
                                     f"label {record.label!r} is not a class of the checkpoint {meta.labels}"))
            continue
        try:
            image = read_image(record.path)
        except (DatasetError, OSError) as error:
            LOG.warning("rejected %s: %s", record.filename, error)
            rejected.append(Rejected.of(record.filename, error))
            continue
        inputs.append(model_input(torch.from_numpy(image)[None], meta))
        kept.append((record, meta.labels.index(record.label) if config.target == "label" else -1))
    size = meta.image_size
    stacked = torch.cat(inputs) if inputs else torch.empty(0, 1, size, size)
    return stacked.to(config.device), kept, rejected


def _explain_images(model: nn.Module, meta: CheckpointMeta, inputs: torch.Tensor, kept: list[tuple[Record, int]],
                    config: ExplainConfig) -> dict[str, np.ndarray]:
    """igos over `inputs` (n, 1, S, S) in batches → the chunk's arrays (saliency (n, s, s) and index columns)."""
    s = config.mask_size
    out: dict[str, list] = {key: [] for key in ("saliency", "target", "target_probability", "insertion_auc",
                                                "deletion_auc", "seconds")}
    for start in range(0, len(kept), config.batch_size):
        batch = kept[start:start + config.batch_size]
        images = inputs[start:start + len(batch)]
        targets = None if config.target == "predicted" else [target for _, target in batch]
        began = time.perf_counter()
        explanation = igos.explain(model, images, method=config.method, targets=targets, mask_size=s,
                                   seed=[image_seed(config.seed, record.filename) for record, _ in batch],
                                   batch_size=config.batch_size, mode=config.mode, iterations=config.iterations,
                                   ig_steps=config.ig_steps, precision=config.precision)
        saliency = igos.normalise_maps(explanation.saliency)
        causal = igos.insertion_deletion(model, images, saliency, targets=explanation.targets,
                                         batch_size=config.batch_size)
        seconds = (time.perf_counter() - began) / len(batch)
        out["saliency"].append(saliency.cpu().numpy().astype(np.float32))
        out["target"] += explanation.targets.tolist()
        out["target_probability"] += explanation.target_scores.tolist()
        out["insertion_auc"] += causal.insertion.tolist()
        out["deletion_auc"] += causal.deletion.tolist()
        out["seconds"] += [seconds] * len(batch)
    arrays = {key: np.round(np.asarray(values, np.float64), _ROUND) for key, values in out.items()
              if key not in ("saliency", "target")}
    arrays["saliency"] = np.concatenate(out["saliency"]) if out["saliency"] else np.zeros((0, s, s), np.float32)
    arrays["target"] = np.asarray(out["target"], np.int64)
    arrays["target_label"] = np.array([meta.labels[t] for t in out["target"]], dtype=str)
    arrays["filenames"] = np.array([record.filename for record, _ in kept], dtype=str)
    return arrays


@dataclass(frozen=True)
class ImageExplanation:
    """One image explained: image (H, W) in [0, 1] as read, saliency (s, s) in [0, 1] (higher = more important),
    the explained class and its probability."""

    image: np.ndarray
    saliency: np.ndarray
    target_label: str
    target_probability: float


def explain_image(path: str | Path, checkpoint: str | Path, config: ExplainConfig, *,
                  target: str | None = None) -> ImageExplanation:
    """Explain one radiograph file with the classifier at `checkpoint` (the `cxr-audit explain` command).

    target: a class name of the checkpoint to explain; None explains the predicted class. Raises
    ImageReadError naming an unreadable file, CheckpointError for a bad checkpoint, ExplainError for a
    class the checkpoint does not know.
    """
    model, meta = load_checkpoint(checkpoint, device=config.device)
    if target is not None and target not in meta.labels:
        raise ExplainError(f"{checkpoint}: class {target!r} is not one of the checkpoint's {list(meta.labels)}")
    image = read_image(path)
    inputs = model_input(torch.from_numpy(image)[None], meta).to(config.device)
    explanation = igos.explain(model, inputs, method=config.method, mask_size=config.mask_size, mode=config.mode,
                               iterations=config.iterations, ig_steps=config.ig_steps,
                               targets=None if target is None else [meta.labels.index(target)],
                               seed=image_seed(config.seed, Path(path).name), precision=config.precision)
    saliency = igos.normalise_maps(explanation.saliency).cpu().numpy()[0].astype(np.float32)
    return ImageExplanation(image, saliency, meta.labels[int(explanation.targets[0])],
                            float(explanation.target_scores[0]))
