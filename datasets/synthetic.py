"""A synthetic COVIDx dataset with a known burned-in text shortcut and ground truth.

- `sample` (in memory, for the quick demo and benchmarks): labelled images with their clean copy, lesion
  mask and text boxes.
- `generate` (on disk): a synthetic COVIDx folder (`train/`, `test/`, `test_decorrelated/`, COVIDx
  split files, ground truth per image); `split_records` and `read_truth` read it back.

Both draw each film with `datasets.synthetic_radiograph.chest_radiograph` (lung fields, mediastinum,
heart, ribs, clavicles, diaphragm, soft tissue, vessels, exposure, noise, pose) and burn in the text of
one of five synthetic hospitals named after real COVIDx sources (`datasets.synthetic_text`), each with
its own text habits. With probability `shortcut` an image comes from its class's own hospital, so the
text predicts the label; the lesion and text ground truth come with every image.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from datasets.atomic import write_bytes, write_text
from datasets.covidx import Record, read_split, write_split
from datasets.synthetic_radiograph import LABELS, chest_radiograph
from datasets.synthetic_text import HOME_HOSPITAL, HOSPITAL_NAMES, HOSPITALS, BurnedText, burn_text


@dataclass
class SyntheticImage:
    """image: (H, W) float32 in [0, 1]; clean: the same without text; lesion: (H, W) bool."""

    image: np.ndarray
    clean: np.ndarray
    lesion: np.ndarray
    label: str
    source: str
    text_boxes: list[BurnedText] = field(default_factory=list)


SPLITS = ("train", "test", "test_decorrelated")
SPLIT_FILES = {split: f"{split}_synthetic.txt" for split in SPLITS}
# Seed stream of each split's radiographs; test_decorrelated reuses test's radiographs.
_SPLIT_CODES = {"train": 1, "test": 2, "test_decorrelated": 2}
_PREFIXES = {"train": "tr", "test": "te", "test_decorrelated": "te"}
MANIFEST = "synthetic.json"


@dataclass
class ImageTruth:
    """Ground truth of one generated image; paths are relative to the dataset root."""

    filename: str
    patient_id: str
    label: str
    source: str
    home_source: bool
    severity: float
    lesion: str
    clean: str
    text_boxes: list[BurnedText]
    lungs: str | None = None  # the lung-field mask (PNG, 255 inside); None in folders generated before it existed


def sample(count: int, *, size: int = 128, seed: int = 0, shortcut: float = 0.9) -> list[SyntheticImage]:
    """Draw `count` images in memory, labels cycling through LABELS, deterministically from `seed`.

    Each is a `chest_radiograph` (patient (seed, index)) with the text of its hospital burned in.

    Args:
        shortcut: probability that an image comes from its label's own hospital (HOME_HOSPITAL),
            else from a hospital drawn uniformly.
    """
    rng = np.random.default_rng(seed)
    by_name = {hospital.name: hospital for hospital in HOSPITALS}
    images = []
    for index in range(count):
        label = LABELS[index % len(LABELS)]
        home = rng.random() < shortcut
        hospital = by_name[HOME_HOSPITAL[label]] if home else HOSPITALS[int(rng.integers(len(HOSPITALS)))]
        film = chest_radiograph(label, size=size, seed=(seed, index))
        image, boxes = burn_text(film.clean, hospital, rng)
        images.append(SyntheticImage(image, film.clean, film.lesion, label, hospital.name, boxes))
    return images


# ---- the dataset on disk -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    patient: int
    image: int
    patient_id: str
    filename: str
    label: str
    source: str
    decorrelated_source: str


def _plan(split: str, count: int, seed: int, shortcut: float, repeat_fraction: float) -> list[_Planned]:
    """Patients (1 or 2 images each), labels balanced by image count, and sources for `split`."""
    code, prefix = _SPLIT_CODES[split], _PREFIXES[split]
    rng = np.random.default_rng([seed, code, 1_000_000])
    other = np.random.default_rng([seed, code, 1_000_001])
    sizes, remaining = [], count
    while remaining:
        size = 2 if remaining >= 2 and rng.random() < repeat_fraction else 1
        sizes.append(size)
        remaining -= size
    per_label = [0] * len(LABELS)
    planned = []
    for patient, size in enumerate(sizes):
        order = rng.permutation(len(LABELS))
        label = LABELS[min(order, key=lambda index: per_label[index])]
        per_label[LABELS.index(label)] += size
        aligned, anywhere = rng.random() < shortcut, HOSPITAL_NAMES[int(rng.integers(len(HOSPITALS)))]
        source = HOME_HOSPITAL[label] if aligned else anywhere
        decorrelated = HOSPITAL_NAMES[int(other.integers(len(HOSPITALS)))]
        patient_id = f"synth-{prefix}-{patient:05d}"
        planned += [_Planned(patient, image, patient_id, f"{patient_id}-{image}.png", label, source, decorrelated)
                    for image in range(size)]
    return planned


def _png(array: np.ndarray) -> bytes:
    """8-bit grayscale PNG of (H, W) in [0, 1] or bool."""
    pixels = array.astype(np.uint8) * 255 if array.dtype == bool else np.rint(np.clip(array, 0, 1) * 255)
    ok, encoded = cv2.imencode(".png", pixels.astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError("OpenCV could not encode a PNG")
    return encoded.tobytes()


_OWN_NAMES = frozenset({*SPLITS, "clean", "lesions", "lungs", "ground_truth", MANIFEST, *SPLIT_FILES.values()})


def _prepare(root: Path, overwrite: bool) -> None:
    """Refuse a non-empty `root` unless `overwrite` and it holds only what `generate` writes (then clear it)."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: exists and is not a folder: expected a folder for the synthetic dataset")
    entries = sorted(root.iterdir()) if root.exists() else []
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{root}: folder is not empty: pass overwrite=True (CLI: --overwrite) to replace "
                              "a synthetic dataset")
    foreign = [entry.name for entry in entries if entry.name not in _OWN_NAMES and not entry.name.startswith(".")]
    if foreign:
        raise FileExistsError(f"{root}: holds files that generate() did not write ({', '.join(foreign[:5])}): "
                              "refusing to overwrite; choose an empty folder")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def generate(
    root: str | Path,
    *,
    n_train: int = 600,
    n_test: int = 200,
    image_size: int = 256,
    seed: int = 0,
    shortcut: float = 0.9,
    repeat_fraction: float = 0.25,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a synthetic COVIDx folder at `root` and return `root`.

    Layout (all files written atomically; `synthetic.json`, written last, marks a complete dataset):

        train/ test/ test_decorrelated/          8-bit PNG radiographs with burned-in text
        train_synthetic.txt test_synthetic.txt test_decorrelated_synthetic.txt
                                                 COVIDx split files: `<patient_id> <filename> <label> <source>`
        clean/<split>/<filename>                 the same radiograph without text (for inpainting checks)
        lesions/<split>/<filename>               lesion mask (0/255; empty for normal)
        lungs/<split>/<filename>                 lung-field mask (0/255)
        ground_truth/<split>.json                per image: label, source, severity, mask paths, text boxes
                                                 with their strings, kind and polarity
        synthetic.json                           the parameters, counts per split and the hospitals

    Labels are balanced by image count; `repeat_fraction` of patients have two films (same chest,
    another pose and exposure), so splitting by patient matters; train and test share no patient.
    Sources are the five `HOSPITALS` (named as real COVIDx sources, so `datasets.covidx.read_split`
    accepts the files). In `train` and `test` a patient's hospital is its label's `HOME_HOSPITAL`
    with probability `shortcut`, else drawn uniformly from all five. `test_decorrelated` holds the
    very radiographs of `test` (same patients, same clean images) with the hospital drawn uniformly,
    independently of the label: a paired, counterfactual test set in which only the text changes.

    Deterministic by `seed`. Raises FileExistsError for a non-empty `root` unless `overwrite`, and
    then only if the folder holds nothing but a previous synthetic dataset. `progress(k)` is called
    after every k images written.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if value < len(LABELS):
            raise ValueError(f"{name} must be at least {len(LABELS)} (one image per label), got {value}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if not 0 <= shortcut <= 1:
        raise ValueError(f"shortcut must be in [0, 1], got {shortcut}")
    if not 0 <= repeat_fraction <= 1:
        raise ValueError(f"repeat_fraction must be in [0, 1], got {repeat_fraction}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    root = Path(root)
    _prepare(root, overwrite)
    hospitals = {hospital.name: hospital for hospital in HOSPITALS}
    counts: dict[str, dict[str, int]] = {}
    for split, count in (("train", n_train), ("test", n_test)):
        plan = _plan(split, count, seed, shortcut, repeat_fraction)
        targets = [(split, "source", 2)]
        if split == "test":
            targets.append(("test_decorrelated", "decorrelated_source", 3))
        truths: dict[str, list[ImageTruth]] = {target: [] for target, _, _ in targets}
        for item in plan:
            code = _SPLIT_CODES[split]
            film = chest_radiograph(item.label, size=image_size, seed=(seed, code, item.patient), image=item.image)
            clean_png, lesion_png, lungs_png = _png(film.clean), _png(film.lesion), _png(film.lungs)
            for target, attribute, stream in targets:
                source = getattr(item, attribute)
                text_rng = np.random.default_rng([seed, code, item.patient, 10 + item.image, stream])
                image, boxes = burn_text(film.clean, hospitals[source], text_rng)
                write_bytes(root / target / item.filename, _png(image))
                write_bytes(root / "clean" / target / item.filename, clean_png)
                write_bytes(root / "lesions" / target / item.filename, lesion_png)
                write_bytes(root / "lungs" / target / item.filename, lungs_png)
                truths[target].append(ImageTruth(
                    item.filename, item.patient_id, item.label, source, source == HOME_HOSPITAL[item.label],
                    round(film.severity, 4), f"lesions/{target}/{item.filename}", f"clean/{target}/{item.filename}",
                    boxes, f"lungs/{target}/{item.filename}"))
                if progress is not None:
                    progress(1)
        for target, items in truths.items():
            write_split([Record(t.patient_id, t.filename, t.label, t.source) for t in items],
                        root / SPLIT_FILES[target])
            document = {"split": target, "split_file": SPLIT_FILES[target], "image_folder": target,
                        "image_size": image_size, "seed": seed, "shortcut": shortcut if target != "test_decorrelated"
                        else None, "images": [_truth_json(t) for t in items]}
            write_text(root / "ground_truth" / f"{target}.json", json.dumps(document, indent=1) + "\n")
            counts[target] = {label: sum(t.label == label for t in items) for label in LABELS}
    manifest = {
        "generator": "datasets.synthetic.generate", "format": 1, "seed": seed, "image_size": image_size,
        "n_train": n_train, "n_test": n_test, "shortcut": shortcut, "repeat_fraction": repeat_fraction,
        "labels": list(LABELS), "home_hospital": HOME_HOSPITAL,
        "splits": {split: {"split_file": SPLIT_FILES[split], "images": sum(counts[split].values()),
                           "per_label": counts[split]} for split in SPLITS},
        "hospitals": {h.name: [{"kind": t.kind, "choices": list(t.choices), "anchor": t.anchor,
                                "probability": t.probability, "dark": t.dark, "plate": t.plate} for t in h.habits]
                      for h in HOSPITALS},
    }
    write_text(root / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return root


def _truth_json(truth: ImageTruth) -> dict:
    entry = {key: value for key, value in truth.__dict__.items() if key != "text_boxes"}
    entry["text_boxes"] = [box.__dict__.copy() for box in truth.text_boxes]
    return entry


def split_records(root: str | Path, split: str, *, clean: bool = False) -> list[Record]:
    """The records of a generated `split`, image paths resolved (`clean=True`: the text-free copies)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    return read_split(root / SPLIT_FILES[split], root / "clean" / split if clean else root / split)


def read_truth(root: str | Path, split: str) -> list[ImageTruth]:
    """The ground truth of a generated `split`, in split-file order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    document = json.loads((Path(root) / "ground_truth" / f"{split}.json").read_text(encoding="utf-8"))
    return [ImageTruth(**{**entry, "text_boxes": [BurnedText(**box) for box in entry["text_boxes"]]})
            for entry in document["images"]]
