"""A probe's scores as numbers: one-vs-rest ROC AUC per class and their mean, accuracy, and a correlation,
each with a patient-cluster bootstrap interval.

The statistics are those of pipeline.statistics (`cluster_weights`: patients resampled with replacement, all
of a patient's films moving together; `weighted_roc_auc`: the Mann–Whitney AUC under those weights;
`percentile_interval`; MIN_INTERVAL_N): a number resting on fewer than MIN_INTERVAL_N films (for an AUC
the smaller of its positives and negatives) has no interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.compare import MIN_INTERVAL_N
from pipeline.statistics import cluster_weights, percentile_interval, weighted_roc_auc

ALL = "all"  # the stratum of the mean over classes
AUC_COLUMNS = ("stratum", "n", "positives", "negatives", "auc", "ci_low", "ci_high")
METRIC_COLUMNS = ("metric", "n", "value", "ci_low", "ci_high")


def resamples(patients: Sequence[str], n_resamples: int, seed: int) -> np.ndarray:
    """Image weights (1 + n_resamples, n): row 0 all ones (the point estimate), then patient-cluster resamples."""
    _, codes = np.unique(np.asarray(patients, dtype=object).astype(str), return_inverse=True)
    weights = cluster_weights(codes, n_resamples, np.random.default_rng(seed))
    return np.vstack([np.ones((1, len(codes))), weights])


def point_and_interval(values: np.ndarray, n: int, confidence: float) -> tuple[float, float, float]:
    """(point, low, high) of weighted values (1 + B,): row 0 the point estimate, rows 1.. the resamples; no
    interval (NaN) when the point is undefined, n < MIN_INTERVAL_N or there are no resamples."""
    point = float(values[0])
    if np.isnan(point) or n < MIN_INTERVAL_N or len(values) < 2:
        return point, np.nan, np.nan
    low, high = percentile_interval(values[1:, None], confidence)
    return point, float(low[0]), float(high[0])


def auc_table(scores: np.ndarray, targets: np.ndarray, classes: Sequence[str], patients: Sequence[str], *,
              n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One-vs-rest ROC AUC of each class and their mean ("all"), with patient-cluster bootstrap intervals.

    scores: (n, k) a score per class (probabilities); targets: (n,) class indices; two classes give one
    row per class (the same AUC, mirrored scores) and "all". Columns AUC_COLUMNS; `n` is the smaller of
    positives and negatives for a class and every film for "all"; "all" averages the classes whose AUC is
    defined in that resample (NaN where none is). AUCs via pipeline.statistics.weighted_roc_auc.
    """
    scores, targets = np.asarray(scores, float), np.asarray(targets)
    weights = resamples(patients, n_resamples, seed)
    per_class, rows = [], []
    for k, name in enumerate(classes):
        positive = targets == k
        values = weighted_roc_auc(scores[:, k], positive, weights)
        per_class.append(values)
        positives, negatives = int(positive.sum()), int((~positive).sum())
        n = min(positives, negatives)
        rows.append((name, n, positives, negatives, *point_and_interval(values, n, confidence)))
    stacked = np.stack(per_class, axis=1)
    finite = np.isfinite(stacked)
    count = finite.sum(axis=1)
    mean = np.full(len(stacked), np.nan)
    np.divide(np.where(finite, stacked, 0.0).sum(axis=1), count, out=mean, where=count > 0)
    defined = [row for row in rows if not np.isnan(row[4])]
    n_all = len(targets) if len(defined) >= 1 else 0
    rows.insert(0, (ALL, n_all, len(targets), 0, *point_and_interval(mean, n_all, confidence)))
    return pd.DataFrame(rows, columns=list(AUC_COLUMNS))


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of values (n,) under image weights (B, n) → (B,), NaN where a row's weights sum to 0."""
    totals = weights.sum(axis=1)
    out = np.full(len(weights), np.nan)
    np.divide(weights @ np.asarray(values, float), totals, out=out, where=totals > 0)
    return out


def weighted_correlation(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation of x and y (n,) under image weights (B, n) → (B,); NaN where either is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    mx, my = weighted_mean(x, weights)[:, None], weighted_mean(y, weights)[:, None]
    cov = (weights * (x - mx) * (y - my)).sum(axis=1)
    vx, vy = (weights * (x - mx) ** 2).sum(axis=1), (weights * (y - my) ** 2).sum(axis=1)
    out = np.full(len(weights), np.nan)
    denominator = np.sqrt(vx * vy)
    np.divide(cov, denominator, out=out, where=denominator > 1e-12)
    return out


def metric_row(name: str, values: np.ndarray, n: int, confidence: float) -> tuple:
    """A METRIC_COLUMNS row of weighted values (1 + B,) (row 0 the point estimate)."""
    return (name, n, *point_and_interval(values, n, confidence))
