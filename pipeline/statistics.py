"""The statistics of the paired comparison (`pipeline.compare`), vectorised over bootstrap resamples.

Each resample is a vector of image weights (how many times each image was drawn: `cluster_weights`
resamples patients, so all of a patient's images move together), weighted confusion matrices come from
one matrix product, and every metric is computed from them for all resamples at once: the bootstrap never
calls scikit-learn per resample (the tests check these metrics against scikit-learn on point estimates).
Arrays of weights are (B, n): B resamples of n images; results are one value per resample, (B,).

Intervals are percentile intervals. BCa would add a jackknife over patients per stratum and per
metric; its bias/skew correction matters most for metrics near 0 or 1, where small strata make
any bootstrap interval rough anyway, so the simpler, transparent percentile interval is used.

The paired tests: McNemar's exact test on correctness and the Stuart–Maxwell test of marginal
homogeneity of the two models' predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from statsmodels.stats.contingency_tables import SquareTable, mcnemar
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

# --------------------------------------------------------------------------------------------------
# Vectorised metrics on weighted images: weights (B, n) -> one value per row


def divide_or_nan(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (an undefined metric)."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def mean_of_finite(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the finite values along `axis` (NaN where none are), without warnings."""
    finite = np.isfinite(values)
    return divide_or_nan(np.where(finite, values, 0.0).sum(axis=axis), finite.sum(axis=axis).astype(float))


def cluster_weights(patients: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Image weights of `n_resamples` patient-level bootstrap resamples: (B, n) counts.

    `patients` (n,) are integer codes 0..P−1. Each resample draws P patients with replacement; an
    image's weight is how many times its patient was drawn.
    """
    n_patients = int(patients.max()) + 1
    draws = rng.integers(0, n_patients, size=(n_resamples, n_patients))
    offsets = (draws + n_patients * np.arange(n_resamples)[:, None]).ravel()
    counts = np.bincount(offsets, minlength=n_resamples * n_patients).reshape(n_resamples, n_patients)
    return counts[:, patients].astype(float)


def weighted_confusion(true: np.ndarray, pred: np.ndarray, weights: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrices (B, K, K), rows = true class, columns = predicted, from image weights (B, n)."""
    cells = np.zeros((len(true), n_classes * n_classes))
    cells[np.arange(len(true)), true * n_classes + pred] = 1.0
    return (weights @ cells).reshape(-1, n_classes, n_classes)


def confusion_metrics(confusion: np.ndarray, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Metrics of confusion matrices (B, K, K) -> {name: (B,)}.

    Undefined values are NaN (scikit-learn's `zero_division=np.nan`): recall of a class with no true
    images, precision of a class never predicted; macro averages and balanced accuracy average the
    defined classes only.
    """
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    precision = divide_or_nan(tp, predicted)
    recall = divide_or_nan(tp, support)
    f1 = divide_or_nan(2 * tp, support + predicted)
    out = {
        "accuracy": divide_or_nan(tp.sum(axis=-1), support.sum(axis=-1)),
        "balanced_accuracy": mean_of_finite(recall),
        "macro_precision": mean_of_finite(precision),
        "macro_recall": mean_of_finite(recall),
        "macro_f1": mean_of_finite(f1),
    }
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out.update({f"{name}_{label}": values[:, k] for k, label in enumerate(labels)})
    return out


def weighted_roc_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of `scores` (n,) for the boolean `positive` (n,) under image weights (B, n) -> (B,).

    The Mann–Whitney form: P(score of a positive > score of a negative) + ½ P(tie), each image
    counted with its weight; NaN where a resample has no positive or no negative image.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = positive[order]
    w_pos = np.add.reduceat(w * pos, starts, axis=1)
    w_neg = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(w_neg, axis=1) - w_neg
    wins = (w_pos * (below + 0.5 * w_neg)).sum(axis=1)
    return divide_or_nan(wins, w_pos.sum(axis=1) * w_neg.sum(axis=1))


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column of `samples` (B, M) over its finite values -> (low (M,), high (M,)).

    Same as `np.nanquantile(..., method="linear")` on both tails, computed with one sort; NaN where a
    column has no finite value.
    """
    ordered = np.sort(samples, axis=0)  # NaN sorts last
    finite = np.isfinite(samples).sum(axis=0)
    columns = np.arange(samples.shape[1])
    bounds = []
    for q in ((1 - confidence) / 2, (1 + confidence) / 2):
        position = q * np.maximum(finite - 1, 0)
        low, frac = np.floor(position).astype(int), position % 1
        high = np.minimum(low + 1, np.maximum(finite - 1, 0))
        value = ordered[low, columns] * (1 - frac) + ordered[high, columns] * frac
        bounds.append(np.where(finite > 0, value, np.nan))
    return bounds[0], bounds[1]


# --------------------------------------------------------------------------------------------------
# Paired tests


def mcnemar_counts(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """2 × 2 correctness table of a vs b and McNemar's exact (binomial) two-sided p-value."""
    both_correct = int(np.sum(correct_a & correct_b))
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    both_wrong = int(np.sum(~correct_a & ~correct_b))
    p_value = float(mcnemar(np.array([[both_correct, a_only], [b_only, both_wrong]]), exact=True).pvalue)
    return {
        "n": len(correct_a),
        "both_correct": both_correct,
        "a_only": a_only,
        "b_only": b_only,
        "both_wrong": both_wrong,
        "p_value": p_value,
    }


def stuart_maxwell(pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int) -> dict[str, float]:
    """Stuart–Maxwell test of marginal homogeneity of the a × b prediction table (K × K).

    Classes neither model predicted are dropped (they carry no information); with no discordant
    image the margins are identical (statistic 0, p 1).
    """
    table = np.bincount(pred_a * n_classes + pred_b, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    used = (table.sum(axis=0) + table.sum(axis=1)) > 0
    table = table[np.ix_(used, used)]
    df = int(used.sum()) - 1
    if table.sum() == np.trace(table):
        return {"stuart_maxwell_statistic": 0.0, "stuart_maxwell_df": df, "stuart_maxwell_p": 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularMatrixWarning)
        result = SquareTable(table, shift_zeros=False).homogeneity()
    return {
        "stuart_maxwell_statistic": float(result.statistic),
        "stuart_maxwell_df": df,
        "stuart_maxwell_p": float(result.pvalue),
    }
