"""Text detection and cleaning on real radiographs against hand-made boxes; writes benchmarks/results/real_text.md.

Films: the 54 Actualmed computed-radiography chest films (a COVIDx source; 8-bit PNG, long side 1280 px)
in the real-film folder beside the checkout (`--images`, default `../shared/real/actualmed/images` from
the repository root, or `$CXR_AUDIT_REAL_FILMS`). Truth: `benchmarks/annotations/actualmed_boxes.csv`,
every burned-in item boxed by eye (kind: circled_marker, lone_letter, word, line; cut by the film edge
or not; light or dark), and `actualmed_films.csv`, which assigns each film to the part the detector was
tuned on ("tune") or the part it is only measured on ("test", by the parity of the sha256 of the file
name). The headline is the test part.

Scoring (the boxes a run would inpaint: found boxes grown by the cleaning margin `CleanConfig.dilate`):
- an item is found when those boxes cover at least `FOUND_COVERAGE` of its box;
- a found box is right when at least `RIGHT_OVERLAP` of its area lies on annotated items (grown by
  `TRUTH_MARGIN` px, for anti-aliased edges); precision = right boxes / found boxes;
- s/image: CRAFT's network time on one film (per polarity scored) plus post-processing and the marker
  finder, median over the films; the score maps of a canvas and polarity are computed once and shared
  by the settings that use them;
- re-detection: each film is cleaned as a run cleans it, with the setting's own boxes less those the text
  guard refuses (`pipeline.clean.screen_boxes`, then `clean_image`, its default method), and detected again;
  an item counts as re-found when the second detection covers `FOUND_COVERAGE` of it.

Usage:  python -m benchmarks.real_text [--quick] [--images DIR] [--settings "paper;default;..."]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    ANNOTATIONS,
    RESULTS,
    command_line,
    cpu_arch,
    markdown_table,
    program,
    real_films_dir,
    write_report,
)
from datasets.images import read_image
from pipeline.clean import CleanConfig, clean_image, screen_boxes
from pipeline.text import POLARITIES, ScoreMaps, TextBox, TextConfig, coverage, make_detector

KINDS = ("circled_marker", "lone_letter", "word", "line")
FOUND_COVERAGE = 0.8
RIGHT_OVERLAP = 0.3
TRUTH_MARGIN = 3
NOTES = "## Notes"  # a section written by hand below the generated tables; kept when the script runs again

# The settings compared: name → TextConfig. "paper" is the COVIDx++ paper's detector (CRAFT, threshold 0.7).
SETTINGS: dict[str, TextConfig] = {
    "paper": TextConfig.paper(),
    "default": TextConfig(),
    "default, canvas 1024": TextConfig(long_side=1024),
    "default, canvas 512": TextConfig(long_side=512),
    "default, canvas 640": TextConfig(long_side=640),
    "default, no mirrored border": TextConfig(edge_pad=0.0),
    "default, no marker finder": TextConfig(markers=False),
    "default, no lone-letter finder": TextConfig(glyphs=False),
    "default, both polarities": TextConfig(both_polarities=True),
}
# The settings of a plain run (each distinct canvas costs a CRAFT pass per film).
RUN = ("paper", "default", "default, canvas 512", "default, canvas 640", "default, no mirrored border",
       "default, no marker finder", "default, no lone-letter finder", "default, both polarities")


@dataclass(frozen=True)
class Item:
    """One annotated burned-in item: box in film pixels [x0, x1) × [y0, y1), its kind and edge flag."""

    box: tuple[int, int, int, int]
    kind: str
    edge_cut: bool


def load_annotations() -> tuple[dict[str, str], dict[str, list[Item]]]:
    """(film → part "tune"/"test", film → its items) from benchmarks/annotations/."""
    with (ANNOTATIONS / "actualmed_films.csv").open(encoding="utf-8", newline="") as handle:
        parts = {row["image"]: row["part"] for row in csv.DictReader(handle)}
    items: dict[str, list[Item]] = {name: [] for name in parts}
    with (ANNOTATIONS / "actualmed_boxes.csv").open(encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if row["image"] not in parts or row["kind"] not in KINDS:
                raise ValueError(f"actualmed_boxes.csv line {line}: unknown film or kind {row['kind']!r}")
            box = tuple(int(row[key]) for key in ("x0", "y0", "x1", "y1"))
            items[row["image"]].append(Item(box, row["kind"], row["edge_cut"] == "1"))
    return parts, items


def grown(box: TextBox | tuple[int, int, int, int], margin: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (box.x0, box.y0, box.x1, box.y1) if isinstance(box, TextBox) else box
    return x0 - margin, y0 - margin, x1 + margin, y1 + margin


def found_items(items: list[Item], boxes: list[TextBox], margin: int) -> list[bool]:
    """For each item, whether `boxes` grown by `margin` cover `FOUND_COVERAGE` of it."""
    masked = [grown(box, margin) for box in boxes]
    return [coverage(item.box, masked) >= FOUND_COVERAGE for item in items]


def right_boxes(items: list[Item], boxes: list[TextBox]) -> list[bool]:
    """For each found box, whether `RIGHT_OVERLAP` of its area lies on the annotated items."""
    truth = [grown(item.box, TRUTH_MARGIN) for item in items]
    return [coverage((b.x0, b.y0, b.x1, b.y1), truth) >= RIGHT_OVERLAP for b in boxes]


@dataclass
class Tally:
    """Counts of one setting on one part of the films."""

    items: Counter
    found: Counter
    boxes: int = 0
    right: int = 0
    refound: int = 0
    refused: int = 0
    seconds: list[float] | None = None
    missed: list[str] | None = None

    def recall(self, key: str) -> str:
        if not self.items[key]:
            return "–"
        return f"{self.found[key] / self.items[key]:.2f} ({self.found[key]}/{self.items[key]})"


class ScoreCache:
    """CRAFT score maps of each film per (canvas, mirrored border, polarity), computed once and shared by the settings,
    with the seconds each pass took."""

    def __init__(self) -> None:
        self.maps: dict[tuple[str, int | None, float, str], tuple[ScoreMaps, float]] = {}

    def get(self, name: str, image: np.ndarray, config: TextConfig) -> tuple[ScoreMaps, float]:
        """The maps of `image` for `config`'s canvas and polarities, and the network seconds they cost."""
        polarities = POLARITIES if config.both_polarities else POLARITIES[:1]
        found = []
        for polarity in polarities:
            key = (name, config.long_side, config.edge_pad, polarity)
            if key not in self.maps:
                detector = make_detector(replace(config, both_polarities=False))
                begin = time.perf_counter()
                maps = detector.score([image], polarities=(polarity,))[0]
                self.maps[key] = maps, time.perf_counter() - begin
            found.append(self.maps[key])
        maps = found[0][0] if len(found) == 1 else found[0][0].combine(found[1][0])
        return maps, sum(seconds for _, seconds in found)


def run_setting(config: TextConfig, films: list[str], images: Path, items: dict[str, list[Item]],
                cache: ScoreCache, redetect: bool) -> Tally:
    margin = CleanConfig().dilate
    tally = Tally(Counter(), Counter(), seconds=[], missed=[])
    for name in films:
        image = read_image(images / name)
        maps, seconds = cache.get(name, image, config)
        begin = time.perf_counter()
        boxes = maps.boxes(config)
        tally.seconds.append(seconds + time.perf_counter() - begin)
        truth = items[name]
        for item, hit in zip(truth, found_items(truth, boxes, margin), strict=True):
            for key in (item.kind, "all", *(("edge_cut",) if item.edge_cut else ())):
                tally.items[key] += 1
                tally.found[key] += hit
            if not hit:
                tally.missed.append(f"{name}: {item.kind} {item.box}{', cut by the edge' if item.edge_cut else ''}")
        tally.boxes += len(boxes)
        tally.right += sum(right_boxes(truth, boxes))
        if redetect and boxes:
            accepted, refused = screen_boxes(image, boxes)
            tally.refused += len(refused)
            cleaned, _ = clean_image(image, accepted)
            tally.refound += sum(found_items(truth, make_detector(config).detect([cleaned])[0], margin))
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=None, help="folder of the Actualmed films")
    parser.add_argument("--settings", default=";".join(RUN), help=f"';'-separated, of {list(SETTINGS)}")
    parser.add_argument("--parts", default="test,tune")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 films of each part, the default setting only")
    parser.add_argument("--output", type=Path, default=RESULTS / "real_text.md")
    args = parser.parse_args(argv)
    images = real_films_dir(args.images)
    if not images.is_dir():
        print(f"error: {images}: the real films are not there (pass --images)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    parts, items = load_annotations()
    names = args.settings.split(";") if not args.quick else ["default"]
    started = time.perf_counter()
    sections = []
    cache = ScoreCache()
    for part in args.parts.split(","):
        films = sorted(name for name, p in parts.items() if p == part)[: 3 if args.quick else None]
        rows, misses = [], []
        for name in names:
            tally = run_setting(SETTINGS[name], films, images, items, cache, redetect=name == "default")
            precision = f"{tally.right / tally.boxes:.2f} ({tally.right}/{tally.boxes})" if tally.boxes else "–"
            refound = (f"{tally.refound / tally.items['all']:.2f} ({tally.refound}/{tally.items['all']}; "
                       f"{tally.refused} boxes refused by the text guard)"
                       if name == "default" and tally.items["all"] else "")
            rows.append([name, *(tally.recall(k) for k in (*KINDS, "edge_cut", "all")), precision,
                         f"{statistics.median(tally.seconds):.2f}", refound])
            print(part, rows[-1], flush=True)
            if name == "default":
                misses = tally.missed
        header = ["setting", *KINDS, "cut by the edge", "all items", "precision", "s/image (median)",
                  "re-found after cleaning"]
        count = sum(len(items[f]) for f in films)
        missed = "\n".join(f"- {line}" for line in misses) or "- none"
        sections.append(f"## {part} films ({len(films)} films, {count} items)\n\n" + markdown_table(rows, header)
                        + "\n\nItems the default setting missed:\n\n" + missed)
    total = time.perf_counter() - started
    text = (
        "# Text detection on real radiographs (Actualmed CR films, boxes annotated by eye)\n\n"
        f"`{command_line(__file__, argv)}`"
        + f" — {cpu_arch()}, {torch.get_num_threads()} torch threads, CPU, torch "
        f"{torch.__version__}; total {total / 60:.1f} min. Recall: found / annotated items; an item is found when "
        f"the found boxes, grown by the cleaning margin ({CleanConfig().dilate} px), cover {FOUND_COVERAGE:.0%} of "
        f"it. Precision: found boxes with at least {RIGHT_OVERLAP:.0%} of their area on annotated items. The "
        "detector was developed on the tune films only; the test films are the measurement.\n\n"
        + settings_table(names) + "\n\n" + "\n\n".join(sections) + "\n"
    )
    print(text)
    write_report(args.output, text, notes=NOTES)
    return 0


def settings_table(names: list[str]) -> str:
    rows = []
    for name in names:
        config = SETTINGS[name]
        rows.append([name, str(config.long_side), str(config.text_threshold), str(config.both_polarities),
                     str(config.edge_pad), str(config.margin), str(config.markers), str(config.glyphs)])
    return markdown_table(rows, ["setting", "CRAFT canvas (px)", "text threshold", "both polarities", "edge mirror",
                        "margin", "marker finder", "lone-letter finder"])


if __name__ == "__main__":
    raise SystemExit(main())
