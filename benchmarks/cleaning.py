"""Text-removal (inpainting) methods of COVIDx++ measured against known clean films and on real radiographs.

For every method of `pipeline.inpaint.METHODS`, with the masks `pipeline.clean.clean_mask` makes (boxes grown
over whole markers and by 2 px):

- synthetic films (`datasets.synthetic.sample`, 512 px, the text of five synthetic hospitals): PSNR inside the
  mask against the known text-free copy of each film, and the texture ratio (`pipeline.inpaint.texture_ratio`:
  high-pass standard deviation inside the mask over that around it; 1.0 = the film's own texture, a smooth
  fill near 0), medians over films;
- real Actualmed films (`--images`, default ../shared/real/actualmed/images beside the checkout): boxes drawn on
  text-free film (bone, lung, soft tissue, tubes; text-sized) so the film itself is the truth. Tuning films
  are films 0-10 of the sorted folder whose name has an even sha256 (3, 6, 7, 10): the methods' settings were
  chosen on them. Held-out films are the films with an odd sha256 (never looked at while tuning); their boxes
  lie at seeded places in the film's central band and are skipped when the text guard calls them text;
- the seconds to clean one real film (its annotated text and marker, 1280 px), one CPU thread;
- what each method leaves of the four real circled markers (near-black/near-white pixels left in the marker's
  box), with and without growing the mask over whole markers;
- boxes on the side edges of the tuning films (a smear: Telea pulls the inner column along the rows);
- the text guard (`pipeline.inpaint.is_text_like`) on the annotated real text, markers and anatomy, on the
  held-out film boxes, and on the synthetic films' true text boxes;
- leakage: can a small CNN tell a filled text box from never-texted film? The cleaning-leakage probe's patch
  variant (benchmarks.probes.true_box_leakage: 120 / 60 synthetic films at 128 px, true boxes filled by each
  method, and the text-free copies as a perfect fill: the probe's floor), ROC AUC per seed of LEAKAGE_SEEDS.

The default method is the one with the lowest mean leakage AUC among those that keep the texture on the tuning
films (median texture ratio within TEXTURE_KEPT): what COVIDx++ needs is a fill a classifier cannot learn.

    python -m benchmarks.cleaning --quick          # seconds: proves the script runs
    python -m benchmarks.cleaning                  # the tables in benchmarks/results/cleaning.md (~6 min, 2 cores)
    python -m benchmarks.cleaning --crops /tmp/crops   # also before/after crops of the real boxes, per method
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import RESULTS, command_line, cpu_arch, now, program, real_films_dir, write_report
from benchmarks.probes import true_box_leakage
from datasets.images import read_image
from datasets.synthetic import SyntheticImage, sample
from pipeline.clean import CleanConfig, clean_mask, psnr
from pipeline.inpaint import METHODS, inpaint, is_text_like, texture_ratio
from pipeline.text import TextBox

DEFAULT_OUT = RESULTS / "cleaning.md"
Box = tuple[int, int, int, int]
# Boxes drawn by hand on the tuning films (x0, y0, x1, y1 in the 1280-px films), by index in the sorted folder:
# burned-in text lines, the circled laterality marker (the ring's outer edge), and anatomy / devices a detector
# could fire on (the guard must refuse these).
TEXT: dict[int, list[Box]] = {6: [(346, 940, 550, 960), (629, 937, 665, 957), (943, 944, 997, 963)],
                              7: [(79, 34, 163, 58), (41, 123, 197, 148)],
                              10: [(1164, 61, 1203, 82), (1090, 182, 1233, 204)]}
MARKERS: dict[int, Box] = {3: (68, 33, 125, 90), 6: (96, 97, 157, 158), 7: (1088, 33, 1155, 100),
                           10: (1171, 350, 1236, 415)}
ANATOMY: dict[str, tuple[int, Box]] = {
    "vertebra (film 3)": (3, (585, 150, 660, 200)), "clavicle (film 3)": (3, (150, 130, 260, 160)),
    "two tubes (film 6)": (6, (570, 120, 650, 150)), "tube connector (film 6)": (6, (575, 20, 645, 110)),
    "chain pendant (film 7)": (7, (600, 290, 680, 350)), "rib (film 7)": (7, (300, 400, 420, 430)),
    "vertebra (film 10)": (10, (600, 100, 690, 140))}
DEFAULT = CleanConfig().method
# A method keeps the texture when its median texture ratio on the tuning films is within these bounds.
TEXTURE_KEPT = (0.7, 1.3)
# Seeds of the synthetic sets the leakage probe runs on (none of them was used to design the fills).
LEAKAGE_SEEDS = tuple(range(100, 106))


@dataclass
class Scores:
    """Per-box (or per-film) measurements of one method on one set."""

    psnr: list[float] = field(default_factory=list)
    texture: list[float] = field(default_factory=list)

    def add(self, out: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> None:
        self.psnr.append(psnr(out, truth, mask))
        self.texture.append(texture_ratio(out, mask))

    def medians(self) -> tuple[float, float]:
        finite = [value for value in self.texture if np.isfinite(value)]
        return statistics.median(self.psnr), statistics.median(finite) if finite else float("nan")


@dataclass
class Settings:
    quick: bool
    out: Path
    images: Path
    crops: Path | None
    synthetic: int
    size: int
    boxes_per_film: int
    held_out: int
    command: str


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few films, small: proves the script runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"markdown table (default {DEFAULT_OUT})")
    parser.add_argument("--images", type=Path, default=real_films_dir(), help="the real Actualmed films "
                        "(default: $CXR_AUDIT_REAL_FILMS, else ../shared/real/actualmed/images beside the checkout)")
    parser.add_argument("--crops", type=Path, default=None, help="write before/after crops of the real boxes here")
    args = parser.parse_args(argv)
    return Settings(args.quick, args.out, args.images, args.crops, synthetic=4 if args.quick else 60,
                    size=256 if args.quick else 512, boxes_per_film=3 if args.quick else 12,
                    held_out=1 if args.quick else 1000, command=command_line(__file__, argv))


# ---- the films ---------------------------------------------------------------------------------------------


def odd_sha(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 2 == 1


def real_films(folder: Path) -> tuple[dict[int, Path], list[Path]]:
    """Tuning films (films 0-10 of the sorted folder with an even sha256 of the name) by index, and held-out
    films (odd sha256)."""
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    tuning = {index: folder / name for index, name in enumerate(names[:11]) if not odd_sha(name)}
    return tuning, [folder / name for name in names if odd_sha(name)]


def film_boxes(image: np.ndarray, seed: int, count: int, taken: Sequence[Box]) -> list[Box]:
    """`count` text-sized boxes (16-40 × 30-200 px, a quarter marker-sized squares) at seeded places in the film's
    central band, away from `taken` boxes and from each other, on film the text guard does not call text."""
    height, width = image.shape
    rng = np.random.default_rng(seed)
    chosen: list[Box] = []
    for _ in range(200 * count):
        if len(chosen) == count:
            break
        h, w = int(rng.integers(16, 40)), int(rng.integers(30, 200))
        if rng.random() < 0.25:
            h = w = int(rng.integers(50, 72))
        y, x = int(rng.integers(int(0.1 * height), int(0.9 * height) - h)), int(rng.integers(int(0.05 * width),
                                                                                            int(0.95 * width) - w))
        box = (x, y, x + w, y + h)
        if any(_near(box, other, 10) for other in [*taken, *chosen]) or is_text_like(image, TextBox(*box, 1.0)):
            continue
        chosen.append(box)
    return chosen


def _near(a: Box, b: Box, gap: int) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def as_boxes(boxes: Sequence[Box]) -> list[TextBox]:
    return [TextBox(*box, 1.0) for box in boxes]


# ---- measurements ----------------------------------------------------------------------------------------------


def measure_synthetic(films: Sequence[SyntheticImage]) -> tuple[dict[str, Scores], list[float]]:
    """PSNR and texture ratio of each method on synthetic films with their true text boxes, and the texture
    ratio of the text-free films themselves under the same masks."""
    scores = {method: Scores() for method in METHODS}
    truth = []
    for film in films:
        mask = clean_mask(film.image, true_boxes(film))
        for method in METHODS:
            scores[method].add(inpaint(film.image, mask, method), film.clean, mask)
        truth.append(texture_ratio(film.clean, mask))
    return scores, truth


def true_boxes(film: SyntheticImage) -> list[TextBox]:
    return [TextBox(b.x0, b.y0, b.x1, b.y1, 1.0) for b in film.text_boxes]


def measure_real(films: dict[int, np.ndarray], settings: Settings, seed: int) -> dict[str, Scores]:
    """PSNR and texture ratio of each method on text-free film boxes (one box at a time; the film is the truth)."""
    scores = {method: Scores() for method in METHODS}
    for index, image in films.items():
        taken = [*TEXT.get(index, []), *([MARKERS[index]] if index in MARKERS else [])]
        for box in film_boxes(image, seed + index, settings.boxes_per_film, taken):
            mask = clean_mask(image, as_boxes([box]))
            for method in METHODS:
                scores[method].add(inpaint(image, mask, method), image, mask)
    return scores


def seconds_per_film(films: dict[int, np.ndarray]) -> dict[str, float]:
    """Mean seconds to clean each tuning film's annotated text and marker (mask included), per method."""
    out = {}
    for method in METHODS:
        started = time.perf_counter()
        for index, image in films.items():
            mask = clean_mask(image, as_boxes([*TEXT.get(index, []), MARKERS[index]]))
            inpaint(image, mask, method)
        out[method] = (time.perf_counter() - started) / max(len(films), 1)
    return out


def marker_leftovers(films: dict[int, np.ndarray]) -> dict[tuple[str, bool], float]:
    """Per method and whole-marker growth: the worst, over the tuning films' markers, ring edge ratio after
    cleaning: mean gradient on the marker's circle (its box's inscribed circle, ±5 px) over the mean gradient
    on a band 12-24 px outside it (the film's own edges). Near 1: nothing of the ring or outline left."""
    out = {}
    for method in METHODS:
        for whole in (True, False):
            ratios = []
            for index, image in films.items():
                box = MARKERS[index]
                mask = clean_mask(image, as_boxes([box]), CleanConfig(whole_markers=whole))
                gradient = _gradient(inpaint(image, mask, method))
                centre, radius = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2), (box[2] - box[0]) // 2
                on, beyond = np.zeros(image.shape, np.uint8), np.zeros(image.shape, np.uint8)
                cv2.circle(on, centre, radius, 1, thickness=11)
                cv2.circle(beyond, centre, radius + 18, 1, thickness=13)
                ratios.append(float(gradient[on > 0].mean() / gradient[beyond > 0].mean()))
            out[method, whole] = max(ratios) if ratios else float("nan")
    return out


def _gradient(image: np.ndarray) -> np.ndarray:
    return np.hypot(cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1)) / 8


def edge_scores(films: dict[int, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Per method: median texture ratio and activity across the smear (mean |step along the rows| inside over
    around; a smear along the rows: near 0) of 24×160-px boxes on the left and right edges of the tuning films,
    at 40, 50 and 60 % of their height."""
    out = {}
    for method in METHODS:
        ratios, activity = [], []
        for image in films.values():
            height, width = image.shape
            for y in (int(0.4 * height), height // 2, int(0.6 * height)):
                for x0, x1 in ((0, 160), (width - 160, width)):
                    mask = clean_mask(image, as_boxes([(x0, y, x1, y + 24)]))
                    filled = inpaint(image, mask, method)
                    ratios.append(texture_ratio(filled, mask))
                    activity.append(_row_activity(filled, mask))
        out[method] = (statistics.median(ratios), statistics.median(activity)) if ratios else (np.nan, np.nan)
    return out


def _row_activity(image: np.ndarray, mask: np.ndarray, ring: int = 6) -> float:
    """Mean |horizontal step| inside `mask` over that in a `ring`-px band around it."""
    step = np.abs(np.diff(image, axis=1))
    around = cv2.dilate(mask.astype(np.uint8), np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)).astype(bool) & ~mask
    outside = step[around[:, 1:] & around[:, :-1]].mean()
    return float(step[mask[:, 1:] & mask[:, :-1]].mean() / outside) if outside > 0 else float("nan")


def guard_counts(tuning: dict[int, np.ndarray], held_out: dict[str, np.ndarray], films: Sequence[SyntheticImage],
                 settings: Settings) -> list[str]:
    """Markdown lines: what the text guard says on annotated real boxes, held-out film boxes and synthetic text."""
    lines = ["", "## Text guard (`is_text_like`)", "", "| boxes | text-like |", "|---|---|"]
    text = [(index, box) for index, boxes in TEXT.items() for box in boxes if index in tuning]
    text += [(index, box) for index, box in MARKERS.items() if index in tuning]
    accepted = sum(is_text_like(tuning[index], TextBox(*box, 1.0)) for index, box in text)
    lines.append(f"| real text lines and circled markers, tuning films | {accepted} of {len(text)} |")
    for name, (index, box) in ANATOMY.items():
        if index in tuning:
            lines.append(f"| {name} | {'yes' if is_text_like(tuning[index], TextBox(*box, 1.0)) else 'no'} |")
    drawn = total = 0
    for seed, image in enumerate(held_out.values()):
        height, width = image.shape
        rng = np.random.default_rng(seed)
        for _ in range(settings.boxes_per_film):
            h, w = int(rng.integers(16, 40)), int(rng.integers(30, 200))
            y, x = int(rng.integers(int(0.2 * height), int(0.8 * height) - h)), int(rng.integers(int(0.15 * width),
                                                                                                int(0.85 * width) - w))
            drawn += is_text_like(image, TextBox(x, y, x + w, y + h, 1.0))
            total += 1
    lines.append(f"| seeded film boxes, central band of the held-out films | {drawn} of {total} |")
    truth = [(film.image, box) for film in films for box in true_boxes(film)]
    lines.append(f"| true text boxes of the synthetic films ({settings.size} px) | "
                 f"{sum(is_text_like(image, box) for image, box in truth)} of {len(truth)} |")
    return lines


def write_crops(folder: Path, films: dict[int, np.ndarray]) -> None:
    """Before/after crops (one row per annotated box: source, then each method) as PNGs, 2× enlarged."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in films.items():
        boxes = [*TEXT.get(index, []), MARKERS[index]]
        mask = clean_mask(image, as_boxes(boxes))
        filled = [image] + [inpaint(image, mask, method) for method in METHODS]
        for number, (x0, y0, x1, y1) in enumerate(boxes):
            window = (slice(max(0, y0 - 24), y1 + 24), slice(max(0, x0 - 24), x1 + 24))
            row = np.hstack([np.pad(version[window], 2, constant_values=1) for version in filled])
            picture = np.rint(np.clip(row, 0, 1) * 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"film{index}_box{number}.png"),
                        cv2.resize(picture, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))


# ---- the report ------------------------------------------------------------------------------------------------


def measure_leakage(seeds: Sequence[int]) -> dict[str | None, list[float]]:
    """Method (None: the text-free copy) → the leakage probe's patch AUC on each seed's synthetic set."""
    out: dict[str | None, list[float]] = {method: [] for method in (*METHODS, None)}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            for method, auc in true_box_leakage([*METHODS, None], seed, Path(scratch)).items():
                out[method].append(auc)
    return out


def best_method(tuning: dict[str, Scores], leakage: dict[str | None, list[float]]) -> str:
    """Among the methods that keep the texture on the tuning films, the one with the lowest mean leakage AUC."""
    kept = [m for m in METHODS if TEXTURE_KEPT[0] <= tuning[m].medians()[1] <= TEXTURE_KEPT[1]]
    return min(kept or METHODS, key=lambda m: statistics.mean(leakage[m]))


def report(settings: Settings, results: dict, started: float) -> str:
    synthetic, tuning, held, seconds = (results[key] for key in ("synthetic", "tuning", "held_out", "seconds"))
    lines = ["# Cleaning: inpainting methods against known clean films", "",
             f"- command: `{settings.command}`",
             f"- date: {now()}",
             f"- machine: {cpu_arch()}, {os.cpu_count()} CPU cores (shared), "
             f"python {platform.python_version()}, OpenCV {cv2.__version__}",
             f"- synthetic: {len(synthetic[METHODS[0]].psnr)} films of {settings.size} px with text "
             "(datasets.synthetic.sample, seed 11); real: "
             + (f"{len(results['tuning_films'])} tuning films, {len(results['held_out_films'])} held-out films, "
                f"{settings.boxes_per_film} text-free boxes each, Actualmed films ({settings.images.name}/ of the "
                "real-film folder)"
                if results["tuning_films"] else f"no real films at {settings.images}: real columns empty"),
             "- masks: `pipeline.clean.clean_mask` (boxes grown over whole markers, then by 2 px); PSNR (dB) inside "
             "the mask against the truth and texture ratio (`pipeline.inpaint.texture_ratio`: 1.0 = the film's own "
             "texture, a smooth fill near 0): medians over films (synthetic: all of a film's text) and over boxes "
             "(real); s/image: cleaning one tuning film's text and marker, mean, one thread", "",
             "| method | synthetic PSNR | synthetic texture | real tuning PSNR | real tuning texture | "
             "real held-out PSNR | real held-out texture | s/image (real, 1280 px) |",
             "|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        cells = [*synthetic[method].medians(), *_medians(tuning, method), *_medians(held, method),
                 seconds.get(method, float("nan"))]
        name = f"**{method}** (default)" if method == DEFAULT else method + (" (paper)" if method == "telea" else "")
        lines.append(f"| {name} | " + " | ".join(_format(value) for value in cells) + " |")
    truth = [value for value in results["truth_texture"] if np.isfinite(value)]
    lines += [f"| (the text-free film itself) | inf | {_format(statistics.median(truth) if truth else np.nan)} "
              "| inf | 1.00 | inf | 1.00 | |"]
    lines += _why(tuning, results["leakage"]) if results["tuning_films"] else []
    lines += _leakage_lines(results["leakage"])
    lines += _marker_lines(results["markers"]) + _edge_lines(results["edges"]) + results["guard"]
    lines += ["", f"Total wall time: {time.perf_counter() - started:.0f} s."]
    return "\n".join(lines) + "\n"


def _why(tuning: dict[str, Scores], leakage: dict[str | None, list[float]]) -> list[str]:
    """Which method the measurements favour, and why the default is what it is, from the measured numbers."""
    chosen = best_method(tuning, leakage)
    psnr_of, texture_of = ({m: tuning[m].medians()[k] for m in METHODS} for k in (0, 1))
    leak_of = {m: statistics.mean(values) for m, values in leakage.items()}
    smooth = max(("telea", "ns", "biharmonic"), key=psnr_of.get)
    verdict = ("It is the default of `CleanConfig.method`." if chosen == DEFAULT
               else f"WARNING: the default is {DEFAULT}, not the best measured method.")
    best_psnr = max(METHODS, key=psnr_of.get)
    return ["", f"Best measured: **{chosen}**, the lowest mean leakage AUC ({leak_of[chosen]:.3f}; a perfect fill "
                f"{leak_of[None]:.3f}) among the methods whose texture ratio on the tuning films lies within "
                f"{TEXTURE_KEPT[0]}–{TEXTURE_KEPT[1]}. {verdict}", "",
            f"Why: a smooth fill leaves a patch without the film's noise and bone texture (tuning texture ratio: "
            f"telea {texture_of['telea']:.2f}, ns {texture_of['ns']:.2f}, biharmonic {texture_of['biharmonic']:.2f}), "
            "which a classifier can learn as the new mark of \"this film had text\" (leakage AUC: telea "
            f"{leak_of['telea']:.3f}, biharmonic {leak_of['biharmonic']:.3f}). `{chosen}` keeps the texture "
            f"({texture_of[chosen]:.2f}) at a median PSNR of {psnr_of[chosen]:.2f} dB on the tuning films, against "
            f"{psnr_of[best_psnr]:.2f} for the highest ({best_psnr})"
            + ("" if best_psnr == smooth else f" and {psnr_of[smooth]:.2f} for the best smooth fill ({smooth})")
            + ". PSNR rewards guessing the lost pixels' mean: copied texture is independent of the lost "
            "texture, so its error counts the film's fine structure twice (3 dB, 10·log10 2, for noise of the right "
            "amplitude; more where coarser structure is copied), while a smooth fill counts it once."]


def _leakage_lines(leakage: dict[str | None, list[float]]) -> list[str]:
    runs = len(leakage[None])
    lines = ["", "## Leakage: can a small CNN tell a filled text box from never-texted film? (synthetic)", "",
             f"The cleaning-leakage probe's patch variant (`benchmarks.probes.true_box_leakage`) on {runs} synthetic "
             "sets of 120 / 60 films at 128 px (seeds "
             f"{', '.join(str(seed) for seed in LEAKAGE_SEEDS[:runs])}), the generator's true boxes grown by 2 px and "
             "filled by each method: ROC AUC of \"filled\" on the test films (0.5: no trace; each set's own "
             "interval is about ±0.1, so read the mean). The text-free copies stand for a perfect fill: what the "
             "probe reads on identical pictures is its own noise.", "",
             "| method | mean AUC | lowest | highest |", "|---|---|---|---|"]
    for method, values in leakage.items():
        name = "(the text-free film itself)" if method is None else method
        lines.append(f"| {name} | {statistics.mean(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    return lines


def _medians(scores: dict[str, Scores], method: str) -> tuple[float, float]:
    return scores[method].medians() if scores and scores[method].psnr else (float("nan"), float("nan"))


def _format(value: float) -> str:
    return "" if np.isnan(value) else "inf" if np.isinf(value) else f"{value:.2f}"


def _marker_lines(leftovers: dict[tuple[str, bool], float]) -> list[str]:
    if not leftovers:
        return []
    lines = ["", "## Circled markers (the tuning films' markers, box = the ring's outer edge)", "",
             "Edge strength left on the marker's circle after cleaning, over the film's own just outside it, worst "
             "marker (about 1: no ring or outline left):", "",
             "| method | mask grown over the whole marker | box only |", "|---|---|---|"]
    lines += [f"| {m} | {leftovers[m, True]:.3f} | {leftovers[m, False]:.3f} |" for m in METHODS]
    return lines


def _edge_lines(edges: dict[str, tuple[float, float]]) -> list[str]:
    if not edges:
        return []
    lines = ["", "## Boxes on the film's side edges (160 × 24 px, 6 per tuning film)", "",
             "| method | texture ratio | activity along the rows (a smear from the inner side: near 0; film: 1) |",
             "|---|---|---|"]
    lines += [f"| {m} | {edges[m][0]:.2f} | {edges[m][1]:.2f} |" for m in METHODS]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    cv2.setNumThreads(1)
    started = time.perf_counter()
    tuning_paths, held_paths = real_films(settings.images)
    if settings.quick:
        tuning_paths = dict(list(tuning_paths.items())[:1])
    tuning = {index: read_image(path) for index, path in tuning_paths.items()}
    held_out = {path.name: read_image(path) for path in held_paths[: settings.held_out]}
    films = [film for film in sample(settings.synthetic, size=settings.size, seed=11) if film.text_boxes]
    synthetic, truth = measure_synthetic(films)
    results = {"synthetic": synthetic, "truth_texture": truth, "tuning_films": tuning, "held_out_films": held_out,
               "tuning": measure_real(tuning, settings, seed=0) if tuning else {},
               "held_out": measure_real(dict(enumerate(held_out.values(), start=100)), settings, seed=1000)
               if held_out else {},
               "seconds": seconds_per_film(tuning) if tuning else {},
               "markers": marker_leftovers(tuning) if tuning else {},
               "edges": edge_scores(tuning) if tuning else {},
               "guard": guard_counts(tuning, held_out, films, settings),
               "leakage": measure_leakage(LEAKAGE_SEEDS[:1] if settings.quick else LEAKAGE_SEEDS)}
    if settings.crops is not None:
        write_crops(settings.crops, tuning)
    text = report(settings, results, started)
    print(text)
    write_report(settings.out, text)
    print(f"written to {settings.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
