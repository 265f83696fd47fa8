"""Label from source: how well the source alone predicts the label in each split (the shortcut's ceiling).

The model is a frequency table: P(label | source) counted on the fitting split, with add-one smoothing;
a source the fitting split lacks gets the split's label frequencies. Its prediction is the most frequent
label of the film's source (ties: the label order given). Scored per split, with patient-cluster bootstrap
intervals (pipeline.probes.scoring):

    accuracy        of the source's majority label
    macro_auc       mean over labels of the one-vs-rest ROC AUC of P(label | source)
    auc_<label>     each label's one-vs-rest AUC
    majority_rate   accuracy of always predicting the fitting split's most frequent label (the floor)

Two fits per split: on "train" (what a classifier trained there could exploit on this split) and on the
split itself ("self": the ceiling of the shortcut within the split; in-sample, optimistic for small
sources).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from datasets.covidx import Record
from datasets.errors import DatasetError
from pipeline.probes.films import ProbeError
from pipeline.probes.scoring import auc_table, point_and_interval, resamples, weighted_mean

LABEL_FROM_SOURCE_COLUMNS = ("split", "fitted_on", "metric", "n", "value", "ci_low", "ci_high")


def source_label_table(records: Sequence[Record], labels: Sequence[str], smoothing: float = 1.0
                       ) -> dict[str | None, np.ndarray]:
    """source → P(label | source) (k,) counted on `records` with add-`smoothing`; key None: the label frequencies."""
    counts: dict[str | None, Counter] = {}
    for record in records:
        counts.setdefault(record.source, Counter())[record.label] += 1
    overall = Counter(record.label for record in records)
    table = {source: np.array([c[label] + smoothing for label in labels], float) for source, c in counts.items()}
    table[None] = np.array([overall[label] + smoothing for label in labels], float)
    return {source: row / row.sum() for source, row in table.items()}


def _score(records: Sequence[Record], table: Mapping[str | None, np.ndarray], labels: Sequence[str],
           floor: str, n_resamples: int, confidence: float, seed: int) -> list[tuple]:
    """(metric, n, value, ci_low, ci_high) rows of the frequency model `table` on `records`."""
    probs = np.stack([table.get(record.source, table[None]) for record in records])
    targets = np.array([labels.index(record.label) for record in records])
    patients = [record.patient_id for record in records]
    weights = resamples(patients, n_resamples, seed)
    correct = (probs.argmax(axis=1) == targets).astype(float)
    at_floor = (targets == labels.index(floor)).astype(float)
    aucs = auc_table(probs, targets, labels, patients, n_resamples=n_resamples, confidence=confidence, seed=seed)
    rows = [("accuracy", len(records), *point_and_interval(weighted_mean(correct, weights), len(records), confidence)),
            ("majority_rate", len(records),
             *point_and_interval(weighted_mean(at_floor, weights), len(records), confidence))]
    for row in aucs.itertuples():
        name = "macro_auc" if row.stratum == "all" else f"auc_{row.stratum}"
        rows.append((name, row.n, row.auc, row.ci_low, row.ci_high))
    return rows


def label_from_source(splits: Mapping[str, Sequence[Record]], *, fit_split: str = "train",
                      labels: Sequence[str] | None = None, n_resamples: int = 1000, confidence: float = 0.95,
                      seed: int = 0, smoothing: float = 1.0) -> pd.DataFrame:
    """The label-from-source check of each split in `splits` (name → records), LABEL_FROM_SOURCE_COLUMNS.

    Fitted on `fit_split` (rows fitted_on "train") and on each split itself (fitted_on "self"; for the fitting
    split the two coincide and only the first is given). labels: the class order (default: sorted labels of
    all splits). Raises ProbeError without `fit_split`, DatasetError naming a film without a source.
    """
    if fit_split not in splits:
        raise ProbeError(f"the fitting split {fit_split!r} is not among the splits {list(splits)}")
    for name, records in splits.items():
        if not records:
            raise ProbeError(f"split {name!r} has no films")
        for record in records:
            if not record.source:
                raise DatasetError(record.path or record.filename, "record has no source (the split file's fourth "
                                                                   "column): label-from-source needs one per film")
    labels = list(labels or sorted({record.label for records in splits.values() for record in records}))
    fitted = source_label_table(splits[fit_split], labels, smoothing)
    floor = labels[int(fitted[None].argmax())]
    rows = []
    for name, records in splits.items():
        fits = [("train", fitted, floor)]
        if name != fit_split:
            own = source_label_table(records, labels, smoothing)
            fits.append(("self", own, labels[int(own[None].argmax())]))
        for fitted_on, table, majority in fits:
            rows += [(name, fitted_on, *row)
                     for row in _score(records, table, labels, majority, n_resamples, confidence, seed)]
    return pd.DataFrame(rows, columns=list(LABEL_FROM_SOURCE_COLUMNS))
