"""Source probes: can a small classifier tell a film's source (hospital) from each view of it?

One probe per view (pipeline.probes.views.VIEWS), trained on the training films to predict the source
and scored on the test films: one-vs-rest ROC AUC per source and their mean ("all"), with patient-cluster
bootstrap intervals. How to read them (docs/probes.md):

    text_only high                 the burned-in text names the source
    cleaned ≈ whole                cleaning did not remove the source cue
    lungs_masked high              cues outside the lungs remain (borders, corners, markers, collimation)
    all near 0.5                   nothing in that view tells the sources apart (at this probe's power)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline.probes.classifier import ProbeConfig, fit_and_score
from pipeline.probes.films import ProbeError, ProbeFilm, check_films
from pipeline.probes.scoring import ALL, AUC_COLUMNS, auc_table
from pipeline.probes.views import VIEWS, render_views

SOURCE_COLUMNS = ("view", *AUC_COLUMNS)


@dataclass(frozen=True, eq=False)
class SourceProbeResult:
    """table: one row per view and stratum (a source one-vs-rest, or "all": their mean), SOURCE_COLUMNS;
    sources: the classes, in the probes' order; n_train, n_test: films; seconds: wall time."""

    table: pd.DataFrame
    sources: tuple[str, ...]
    n_train: int
    n_test: int
    seconds: float

    def auc(self, view: str, stratum: str = ALL) -> float:
        """The AUC of one view and stratum (NaN where undefined)."""
        rows = self.table[(self.table.view == view) & (self.table.stratum == stratum)]
        if rows.empty:
            raise KeyError(f"no row for view {view!r}, stratum {stratum!r}")
        return float(rows.auc.iloc[0])


def source_probes(films: Sequence[ProbeFilm], views: Sequence[str] = VIEWS,
                  config: ProbeConfig | None = None) -> SourceProbeResult:
    """Train and score one source probe per view on `films` (split "train" to learn, "test" to score).

    Sources are those of the training films; test films of a source never seen in training are left out
    (they cannot be scored one-vs-rest against a class the probe lacks). Raises ProbeError for fewer than two
    sources or an unknown view, PatientLeakError when a patient is in both splits, and the errors of
    `views.render_view` (naming the file) for unreadable films.
    """
    started = time.perf_counter()
    config = config or ProbeConfig()
    unknown = [view for view in views if view not in VIEWS]
    if unknown or not views:
        raise ProbeError(f"views must be a non-empty selection of {VIEWS}, got {list(views)}")
    train, test = check_films(films)
    sources = tuple(sorted({film.source for film in train}))
    if len(sources) < 2:
        raise ProbeError(f"the training films come from {len(sources)} source(s) {list(sources)}: a source probe "
                         "needs at least two")
    test = [film for film in test if film.source in sources]
    if not test:
        raise ProbeError(f"no test film comes from a training source {list(sources)}")
    train_targets = torch.tensor([sources.index(film.source) for film in train])
    test_targets = np.array([sources.index(film.source) for film in test])
    patients = [film.patient_id for film in test]
    tables = []
    for view in views:
        train_images = render_views(train, view, config.image_size, config.work_size)
        test_images = render_views(test, view, config.image_size, config.work_size)
        scores = fit_and_score(train_images, train_targets, test_images, len(sources), config).numpy()
        table = auc_table(scores, test_targets, sources, patients, n_resamples=config.n_resamples,
                          confidence=config.confidence, seed=config.seed)
        tables.append(table.assign(view=view)[list(SOURCE_COLUMNS)])
    return SourceProbeResult(pd.concat(tables, ignore_index=True), sources, len(train), len(test),
                             time.perf_counter() - started)
