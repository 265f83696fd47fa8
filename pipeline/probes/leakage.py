"""Cleaning-leakage probe: can a small classifier tell a cleaned (inpainted) film from one that never had text?

If it can, COVIDx++ carries a new shortcut: "this film was cleaned" stands in for "this film had text", and
through the source for the label. Two variants, each trained on the training films and scored on the test
films (ROC AUC of "cleaned", patient-cluster bootstrap interval):

    whole     the whole film (pipeline.probes.views.resize to the probe's size)
    patches   a square patch around each cleaned box of a cleaned film, against a patch of a never-texted
              film at the place of a box drawn from a cleaned film of the same split (same relative
              position and size), so position and anatomy do not tell the two apart; only the fill does

Then, on the test films, the correlation of the probe's score with each label (one-vs-rest Pearson, with
a bootstrap interval) and each label's share of cleaned films: a leak matters where it follows the label.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from datasets.images import read_image
from pipeline.probes.classifier import ProbeConfig, fit_and_score
from pipeline.probes.films import ProbeError, ProbeFilm, check_films
from pipeline.probes.scoring import AUC_COLUMNS, auc_table, point_and_interval, resamples, weighted_correlation
from pipeline.probes.views import resize

VARIANTS = ("whole", "patches")
CLASSES = ("untouched", "cleaned")
LEAKAGE_COLUMNS = ("variant", *AUC_COLUMNS[1:])
CORRELATION_COLUMNS = ("variant", "label", "n", "films", "cleaned_share", "correlation", "ci_low", "ci_high")


@dataclass(frozen=True, eq=False)
class LeakageResult:
    """table: one row per variant, LEAKAGE_COLUMNS (auc: of "cleaned" against "untouched"); correlation: per
    variant and label, CORRELATION_COLUMNS; n_train, n_test: films; seconds: wall time."""

    table: pd.DataFrame
    correlation: pd.DataFrame
    n_train: int
    n_test: int
    seconds: float

    def auc(self, variant: str) -> float:
        return float(self.table.set_index("variant").loc[variant, "auc"])


@dataclass(frozen=True)
class _Item:
    picture: np.ndarray
    target: int
    patient: str
    label: str


def patch_window(box: tuple[float, float, float, float], shape: tuple[int, int],
                 margin: float = 0.5) -> tuple[int, int, int]:
    """(top, left, side) of the square around `box` (x0, y0, x1, y1): side max(w, h)·(1 + margin), at least 8 px
    and at most the film's shorter side, centred on the box and shifted to lie inside the film."""
    height, width = shape
    x0, y0, x1, y1 = box
    side = int(min(min(height, width), max(8, round(max(x1 - x0, y1 - y0) * (1 + margin)))))
    left = int(np.clip(round((x0 + x1) / 2 - side / 2), 0, width - side))
    top = int(np.clip(round((y0 + y1) / 2 - side / 2), 0, height - side))
    return top, left, side


def _items(films: Sequence[ProbeFilm], cleaned_paths: set, variant: str, size: int, margin: float,
           rng: np.random.Generator) -> list[_Item]:
    """The pictures of one split's films: whole films, or patches (see the module docstring)."""
    images = [read_image(film.path) for film in films]
    items = []
    if variant == "whole":
        return [_Item(resize(image, size), int(film.path in cleaned_paths), film.patient_id, film.label)
                for film, image in zip(films, images, strict=True)]
    relative = [(x0 / image.shape[1], y0 / image.shape[0], x1 / image.shape[1], y1 / image.shape[0])
                for film, image in zip(films, images, strict=True) if film.path in cleaned_paths
                for x0, y0, x1, y1 in film.boxes]
    if not relative:
        raise ProbeError(f"no cleaned film of the {films[0].split} split has a box: the patch probe needs some")
    for film, image in zip(films, images, strict=True):
        height, width = image.shape
        target = int(film.path in cleaned_paths)
        if target:
            boxes = list(film.boxes)
        else:
            rx0, ry0, rx1, ry1 = relative[int(rng.integers(len(relative)))]
            boxes = [(rx0 * width, ry0 * height, rx1 * width, ry1 * height)]
        for box in boxes:
            top, left, side = patch_window(box, (height, width), margin)
            items.append(_Item(resize(image[top:top + side, left:left + side], size), target, film.patient_id,
                               film.label))
    return items


def leakage_probe(cleaned: Sequence[ProbeFilm], untouched: Sequence[ProbeFilm], config: ProbeConfig | None = None,
                  *, variants: Sequence[str] = VARIANTS, patch_size: int = 32, margin: float = 0.5) -> LeakageResult:
    """Train and score the leakage probe's `variants` (VARIANTS).

    cleaned: films after cleaning, `path` the cleaned film and `boxes` the boxes that were inpainted (pixels
    of that film); untouched: films that never had text, `path` the film. Both carry split "train" or "test";
    no patient may be in both splits. A patient may have films in both groups, but then its own chest is
    on both sides: draw the groups by patient. The patch variant's pictures are patch_size px; the whole
    variant's config.image_size px.
    """
    started = time.perf_counter()
    config = config or ProbeConfig()
    if not variants or any(variant not in VARIANTS for variant in variants):
        raise ProbeError(f"variants must be a non-empty selection of {VARIANTS}, got {list(variants)}")
    if not cleaned or not untouched:
        raise ProbeError(f"{len(cleaned)} cleaned and {len(untouched)} untouched films: the leakage probe needs both")
    films = [*cleaned, *untouched]
    train, test = check_films(films)
    cleaned_paths = {film.path for film in cleaned}
    for name, part in (("training", train), ("test", test)):
        groups = {film.path in cleaned_paths for film in part}
        if groups != {True, False}:
            raise ProbeError(f"the {name} films hold only {'cleaned' if True in groups else 'untouched'} films: "
                             "the leakage probe needs both in each split")
    rows, correlations = [], []
    for variant in variants:
        size = patch_size if variant == "patches" else config.image_size
        rng = np.random.default_rng([config.seed, VARIANTS.index(variant)])
        train_items = _items(train, cleaned_paths, variant, size, margin, rng)
        test_items = _items(test, cleaned_paths, variant, size, margin, rng)
        train_images = torch.from_numpy(np.stack([item.picture for item in train_items]))
        test_images = torch.from_numpy(np.stack([item.picture for item in test_items]))
        targets = np.array([item.target for item in test_items])
        patients = [item.patient for item in test_items]
        probe_config = config if variant == "whole" else replace(config, image_size=size, work_size=max(size, 16))
        scores = fit_and_score(train_images, torch.tensor([item.target for item in train_items]), test_images,
                               len(CLASSES), probe_config).numpy()
        table = auc_table(scores, targets, CLASSES, patients, n_resamples=config.n_resamples,
                          confidence=config.confidence, seed=config.seed)
        row = table[table.stratum == "cleaned"].iloc[0]
        rows.append((variant, *row[list(AUC_COLUMNS[1:])]))
        weights = resamples(patients, config.n_resamples, config.seed)
        labels = np.array([item.label for item in test_items])
        for label in sorted(set(labels)):
            is_label = labels == label
            values = weighted_correlation(scores[:, 1], is_label, weights)
            n = int(min(is_label.sum(), (~is_label).sum()))
            correlations.append((variant, label, n, int(is_label.sum()), float(targets[is_label].mean()),
                                 *point_and_interval(values, n, config.confidence)))
    return LeakageResult(pd.DataFrame(rows, columns=list(LEAKAGE_COLUMNS)),
                         pd.DataFrame(correlations, columns=list(CORRELATION_COLUMNS)), len(train), len(test),
                         time.perf_counter() - started)
