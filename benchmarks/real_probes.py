"""The probes on real radiographs: what one COVIDx source's films can and cannot tell (pipeline.probes).

Films: the Actualmed films in the real-film folder beside the checkout (`--images`; metadata.csv one level up:
patient, finding, view). They come from one source, so the source probes and label-from-source cannot run on
them (a second source from synthetic or other films would make the probe tell the collections apart, not
measure a shortcut). What one source allows:

1. Cleaning leakage within the film. Text is found and removed as an audit does (the default detector, the
   text guard, `pipeline.clean.clean_image` with each fill). A patch around each cleaned box (the leakage
   probe's window, `pipeline.probes.leakage.patch_window`) is set against a patch at the mirror-image place
   (left-right) of the same cleaned film, where nothing was detected or annotated, so the patient, the film
   and the height on the chest are the same on both sides and only the fill (and the left-right anatomy) can
   tell them apart. A small CNN is trained on the patches of half the patients (seeded) and scored on the
   other half: ROC AUC of "cleaned" with a patient-cluster bootstrap interval. Rows: each fill, and the text
   left in (a check that the probe finds text: about 1), and a control with both places on untouched film
   (the box moved one window towards the film's middle, and its mirror): what left-right anatomy alone gives.
2. The label within the source (COVID-19 against No finding; films without a finding left out), from the
   whole film, the detected text only, the film with its lungs masked, and the cleaned film
   (`pipeline.probes.source_probes` with the label as the category). Read: text only well above 0.5 would
   mean the burned-in text (e.g. "PORTATIL", "SENTADO": how the patient was imaged) tells the label within
   one hospital, a shortcut no source merge is needed for.

With about 50 patients the intervals are wide: the report gives n and the interval, and calls a probe above
or at chance only where its interval excludes 0.5.

    python -m benchmarks.real_probes --quick    # a few films: proves the script runs
    python -m benchmarks.real_probes            # benchmarks/results/real_probes.md (~5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import (
    RESULTS,
    command_line,
    environment,
    load_average,
    load_note,
    markdown_table,
    png_bytes,
    program,
    real_films_dir,
    write_results,
)
from benchmarks.real_text import load_annotations
from datasets.atomic import write_bytes
from datasets.images import read_image
from pipeline.clean import CleanConfig, clean_image, screen_boxes
from pipeline.probes import AUC_COLUMNS, ProbeConfig, ProbeFilm, auc_table, fit_and_score, source_probes
from pipeline.probes.leakage import patch_window
from pipeline.probes.views import resize
from pipeline.text import TextBox, TextConfig, make_detector

FILLS = ("patch", "texture", "telea")
PATCH_SIZE = 32  # px: the leakage probe's picture side (pipeline.probes.leakage's default)
LABELS = ("COVID-19", "No finding")
LABEL_VIEWS = ("whole", "text_only", "lungs_masked", "cleaned")
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Film:
    """One real film: its name, patient, finding ("" when none is given), view ("AP", "PA"), pixels (H, W),
    detected boxes and annotated items."""

    name: str
    patient: str
    finding: str
    view: str
    image: np.ndarray
    boxes: tuple[TextBox, ...]
    annotated: tuple[Box, ...]


def read_films(images: Path, stride: int = 1) -> list[Film]:
    """Every `stride`-th film of metadata.csv (one level above `images`), with its detected (default detector,
    after the text guard) and annotated boxes."""
    with (images.parent / "metadata.csv").open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if (images / row["imagename"]).is_file()]
    rows = sorted(rows, key=lambda row: row["imagename"])[::stride]
    _, items = load_annotations()
    detector = make_detector(TextConfig())
    films = []
    for row in rows:
        image = read_image(images / row["imagename"])
        boxes, _ = screen_boxes(image, detector.detect([image])[0])
        films.append(Film(row["imagename"], row["patientid"], row["finding"], row["view"], image, tuple(boxes),
                          tuple(item.box for item in items.get(row["imagename"], []))))
    return films


def patient_split(films: Sequence[Film], seed: int) -> dict[str, str]:
    """Patient → "train" or "test": a seeded half of the patients of each finding (a patient's first film's)."""
    finding = {}
    for film in films:
        finding.setdefault(film.patient, film.finding)
    rng, split = np.random.default_rng(seed), {}
    for group in sorted(set(finding.values())):
        patients = sorted(patient for patient, value in finding.items() if value == group)
        order = rng.permutation(len(patients))
        split |= {patients[i]: "train" if rank < (len(patients) + 1) // 2 else "test" for rank, i in enumerate(order)}
    return split


def mirrored(box: Box, width: int) -> Box:
    x0, y0, x1, y1 = box
    return width - x1, y0, width - x0, y1


def _overlaps(a: Box, others: Sequence[Box], gap: int) -> bool:
    return any(not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])
               for b in others)


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    top, left, side = patch_window(box, image.shape)
    return resize(image[top:top + side, left:left + side], PATCH_SIZE)


def leakage_pictures(film: Film, cleaned: np.ndarray | None, *, control: bool = False
                     ) -> list[tuple[np.ndarray, int]]:
    """(picture, 1 = around a cleaned box, 0 = its mirror place) of one film. cleaned: the film after cleaning,
    None for the film with its text left in. A pair whose places touch a detected or annotated box elsewhere
    is left out. control: both places untouched film, the box moved one window towards the film's middle
    (vertically) and its mirror: what left-right anatomy alone lets the probe tell."""
    image = film.image if cleaned is None else cleaned
    height, width = image.shape
    taken = [(b.x0, b.y0, b.x1, b.y1) for b in film.boxes] + list(film.annotated)
    gap = CleanConfig().dilate + 8
    out = []
    for box in film.boxes:
        own = (box.x0, box.y0, box.x1, box.y1)
        if control:
            step = patch_window(own, image.shape)[2] * (1 if own[1] < height / 2 else -1)
            own = (own[0], own[1] + step, own[2], own[3] + step)
            if own[1] < 0 or own[3] > height or _overlaps(own, taken, gap):
                continue
        mirror = mirrored(own, width)
        if _overlaps(mirror, taken, gap):
            continue
        out += [(_crop(image, own), 1), (_crop(image, mirror), 0)]
    return out


def leakage_row(films: Sequence[Film], split: dict[str, str], cleaned: dict[str, np.ndarray] | None,
                config: ProbeConfig, *, control: bool = False) -> dict:
    """The patch probe's AUC (AUC_COLUMNS) on one version of the films (`cleaned`: name → cleaned film)."""
    parts: dict[str, tuple[list, list, list]] = {"train": ([], [], []), "test": ([], [], [])}
    for film in films:
        pictures, targets, patients = parts[split[film.patient]]
        for picture, target in leakage_pictures(film, None if cleaned is None else cleaned[film.name],
                                                control=control):
            pictures.append(picture)
            targets.append(target)
            patients.append(film.patient)
    (train_x, train_y, _), (test_x, test_y, test_patients) = parts["train"], parts["test"]
    probe = ProbeConfig(image_size=PATCH_SIZE, work_size=PATCH_SIZE, epochs=config.epochs,
                        n_resamples=config.n_resamples, seed=config.seed)
    scores = fit_and_score(torch.from_numpy(np.stack(train_x)), torch.tensor(train_y),
                           torch.from_numpy(np.stack(test_x)), 2, probe).numpy()
    table = auc_table(scores, np.array(test_y), ("mirror", "cleaned"), test_patients,
                      n_resamples=config.n_resamples, seed=config.seed)
    row = table[table.stratum == "cleaned"].iloc[0]
    return {**{key: row[key].item() if hasattr(row[key], "item") else row[key] for key in AUC_COLUMNS[1:]},
            "train_pictures": len(train_y),
            "test_pictures": len(test_y)}


def label_films(films: Sequence[Film], split: dict[str, str], cleaned: dict[str, Path], folder: Path
                ) -> list[ProbeFilm]:
    """ProbeFilms of the films with a finding in LABELS, the finding as the probe's category (`source`)."""
    out = []
    for film in films:
        if film.finding not in LABELS:
            continue
        path = folder / film.name
        if not path.is_file():
            write_bytes(path, png_bytes(film.image))
        out.append(ProbeFilm(film.name, film.patient, film.finding, film.finding, split[film.patient], path,
                             tuple((b.x0, b.y0, b.x1, b.y1) for b in film.boxes), cleaned=cleaned[film.name]))
    return out


def label_from_view(films: Sequence[Film], split: dict[str, str], config: ProbeConfig) -> dict:
    """The view alone as the label's score on the test patients' labelled films: AP (portable, sitting, supine:
    the sicker patients) for COVID-19, PA for No finding. AUC_COLUMNS of the "all" row (n: every test film)."""
    test = [film for film in films if film.finding in LABELS and split[film.patient] == "test"]
    ap = np.array([film.view == "AP" for film in test], float)
    table = auc_table(np.stack([ap, 1 - ap], axis=1), np.array([LABELS.index(film.finding) for film in test]),
                      LABELS, [film.patient for film in test], n_resamples=config.n_resamples, seed=config.seed)
    row = table[table.stratum == "all"].iloc[0]
    return {key: row[key].item() if hasattr(row[key], "item") else row[key] for key in AUC_COLUMNS[1:]}


def measure(films: Sequence[Film], config: ProbeConfig, scratch: Path) -> dict:
    split = patient_split(films, config.seed)
    versions = {fill: {film.name: clean_image(film.image, film.boxes, CleanConfig(method=fill))[0]
                       for film in films} for fill in FILLS}
    leakage = {f"cleaned by {fill}": leakage_row(films, split, versions[fill], config) for fill in FILLS}
    leakage["text left in"] = leakage_row(films, split, None, config)
    leakage["control: untouched film beside the box vs its mirror"] = leakage_row(films, split, None, config,
                                                                                   control=True)
    cleaned_paths = {}
    for film in films:
        cleaned_paths[film.name] = scratch / "cleaned" / film.name
        write_bytes(cleaned_paths[film.name], png_bytes(versions[FILLS[0]][film.name]))
    labelled = label_films(films, split, cleaned_paths, scratch / "films")
    probes = source_probes(labelled, LABEL_VIEWS, config)
    return {"view_by_label": {label: {view: sum(f.finding == label and f.view == view for f in films)
                                      for view in ("AP", "PA")} for label in LABELS},
            "label_from_view": label_from_view(films, split, config),
            "films": len(films), "patients": len(split), "boxes": sum(len(film.boxes) for film in films),
            "labelled": {label: sum(film.label == label for film in labelled) for label in LABELS},
            "split": {part: sum(value == part for value in split.values()) for part in ("train", "test")},
            "leakage": leakage, "label_probes": _records(probes.table)}


def _records(table: pd.DataFrame) -> list[dict]:
    return [{key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in row.items()}
            for row in table.astype(object).to_dict(orient="records")]


def _number(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _interval(row: dict) -> str:
    bounds = (row.get("ci_low"), row.get("ci_high"))
    if any(value is None or (isinstance(value, float) and math.isnan(value)) for value in bounds):
        return "–"
    return f"{_number(bounds[0])}–{_number(bounds[1])}"


def _reading(row: dict) -> str:
    """Above / at chance where the interval says so; else no verdict."""
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return "no interval (too few pictures)"
    return "above chance" if low > 0.5 else "below chance" if high < 0.5 else "interval includes 0.5: no verdict"


def markdown(numbers: dict, command: str, env: dict) -> str:
    leakage_rows = [(name, str(row["positives"]), str(row["negatives"]), str(row["train_pictures"]),
                     _number(row["auc"]), _interval(row), _reading(row))
                    for name, row in numbers["leakage"].items()]
    label_rows = [(row["view"], str(row["n"]), _number(row["auc"]), _interval(row), _reading(row))
                  for row in numbers["label_probes"] if row["stratum"] == "all"]
    settings, by_view = numbers["settings"], numbers["label_from_view"]
    return "\n".join([
        "# Probes on real films (one source: Actualmed)", "", f"`{command}`", "",
        f"- {env['date']}, {env['machine']}", load_note(env),
        f"- {numbers['films']} films of {numbers['patients']} patients ({numbers['split']['train']} train / "
        f"{numbers['split']['test']} test patients, seed {settings['seed']}); {numbers['boxes']} boxes found by the "
        f"default detector after the text guard; probe: small CNN, {settings['epochs']} epochs, "
        f"{settings['n_resamples']} patient-cluster bootstrap resamples; {numbers['seconds']} s", "",
        "## 1. Cleaning leakage within the film", "",
        f"Patches ({PATCH_SIZE} px) around each cleaned box against the mirror-image place of the same film "
        "(nothing detected or annotated there): ROC AUC of \"cleaned\" on the test patients' patches.", "",
        markdown_table(leakage_rows, ("version", "cleaned patches (test)", "mirror patches (test)",
                                      "train pictures", "AUC", "95 % interval", "reading")), "",
        "## 2. The label within the source (COVID-19 against No finding)", "",
        f"{numbers['labelled']['COVID-19']} COVID-19 and {numbers['labelled']['No finding']} No finding films; "
        "the probe trained on the train patients' films, AUC on the test patients' films (n: "
        "all of them).", "",
        markdown_table([*label_rows, ("the view alone (AP for COVID-19; metadata.csv, no probe)", str(by_view["n"]),
                                      _number(by_view["auc"]), _interval(by_view), _reading(by_view))],
                       ("view", "n", "AUC", "95 % interval", "reading")), "",
        "Views by finding (all films): " + "; ".join(
            f"{label} AP {views['AP']}, PA {views['PA']}" for label, views in numbers["view_by_label"].items())
        + ". Where the view follows the finding, the text that names how the film was taken (\"AP\", "
        "\"SENTADO\", \"PORTATIL\") and the film's own look (a sitting AP film's magnified heart, shoulder "
        "blades over the lungs) can stand in for the label within one hospital; cleaning removes the first only.",
        "",
        "What these films cannot tell: whether a source shortcut survives cleaning (one source, no source probe), "
        "and how much of a classifier's accuracy the source explains (label from source needs several sources).",
    ]) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every 4th film, 3 epochs, 50 resamples")
    parser.add_argument("--images", type=Path, default=real_films_dir(), help="the Actualmed films' images/ folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "real_probes.md")
    args = parser.parse_args(argv)
    if not (args.images / "..").joinpath("metadata.csv").is_file():
        parser.error(f"{args.images}: no real films with a metadata.csv beside them (set --images or "
                     "$CXR_AUDIT_REAL_FILMS)")
    settings = {"epochs": 3 if args.quick else 12, "n_resamples": 50 if args.quick else 1000, "seed": args.seed}
    config = ProbeConfig(image_size=64, work_size=256, epochs=settings["epochs"], n_resamples=settings["n_resamples"],
                         seed=args.seed)
    start_load, started = load_average(), time.perf_counter()
    films = read_films(args.images, 4 if args.quick else 1)
    with tempfile.TemporaryDirectory() as scratch:
        numbers = measure(films, config, Path(scratch))
    numbers |= {"settings": settings, "seconds": round(time.perf_counter() - started, 1)}
    env = environment((start_load, load_average()))
    numbers["environment"] = env
    write_results(args.out, numbers, markdown(numbers, command_line(__file__, argv), env))


if __name__ == "__main__":
    main()
