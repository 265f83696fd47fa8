"""Paired comparison of two classifiers (a = before, b = after) on the same test images.

Point metrics (accuracy, balanced accuracy, per-class and macro precision / recall / F1, one-vs-rest
ROC AUC) for each model and for the difference b − a, with paired cluster-bootstrap intervals:
patients are resampled with replacement (all of a patient's images move together) and the same
resample is applied to both models. Correctness is compared with McNemar's exact test and the two
prediction distributions with the Stuart–Maxwell test. Everything is repeated per stratum (all
images, each source, flagged / not flagged) and per test split. Tables follow
docs/run-directory.md (`compare/metrics.csv`, `compare/mcnemar.csv`, `compare/confusion.csv`).

The bootstrap is vectorised: each resample is a vector of image weights, and every metric of every
resample comes from weighted confusion matrices (`pipeline.statistics`, which also says why the
intervals are percentile intervals).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from datasets.atomic import write_text
from pipeline.statistics import (
    cluster_weights,
    confusion_metrics,
    divide_or_nan,
    mcnemar_counts,
    mean_of_finite,
    percentile_interval,
    stuart_maxwell,
    weighted_confusion,
    weighted_roc_auc,
)

DEFAULT_LABELS = ("normal", "pneumonia", "COVID-19")
DEFAULT_STRATA = ("source", "flagged")
REQUIRED_COLUMNS = ("filename", "patient_id", "label", "predicted")
MODELS = ("a", "b")
DIFFERENCE = "b-a"
STRATUM_KEY = ["split", "stratum_kind", "stratum"]
PAIR_COUNTS = ["n", "both_correct", "a_only", "b_only", "both_wrong", "p_value"]
MCNEMAR_COLUMNS = [*STRATUM_KEY, *PAIR_COUNTS, "stuart_maxwell_statistic", "stuart_maxwell_df", "stuart_maxwell_p"]
CLASS_MCNEMAR_COLUMNS = [*STRATUM_KEY, "label", *PAIR_COUNTS]
METRICS_COLUMNS = [*STRATUM_KEY, "model", "metric", "n", "value", "ci_low", "ci_high"]
MIN_INTERVAL_N = 10  # a metric resting on fewer images gets no interval (the bootstrap cannot carry it)
CONFUSION_COLUMNS = ["split", "model", "true", "predicted", "count", "row_fraction"]


class ComparisonTables(NamedTuple):
    """The three long-format tables of `compare/` (see docs/run-directory.md)."""

    metrics: pd.DataFrame
    mcnemar: pd.DataFrame
    confusion: pd.DataFrame


@dataclass(frozen=True, eq=False)
class Comparison:
    """Result of comparing a (before) with b (after) on one or more test splits.

    `metrics`, `mcnemar` and `confusion` are the contract tables; `confusion` adds `row_fraction`
    (the row-normalised matrix) and `mcnemar` adds the Stuart–Maxwell test of the a × b prediction
    table. `class_mcnemar` is McNemar on the images of one true class: for class c it tests the
    difference in recall of c.
    """

    metrics: pd.DataFrame
    mcnemar: pd.DataFrame
    confusion: pd.DataFrame
    class_mcnemar: pd.DataFrame

    def tables(self) -> ComparisonTables:
        """The three tables written to `compare/metrics.csv`, `compare/mcnemar.csv`, `compare/confusion.csv`."""
        return ComparisonTables(self.metrics, self.mcnemar, self.confusion)

    @classmethod
    def concat(cls, parts: Sequence[Comparison]) -> Comparison:
        """Stack the tables of several comparisons (e.g. one per split)."""
        return cls(
            *(
                pd.concat([getattr(p, name) for p in parts], ignore_index=True)
                for name in ("metrics", "mcnemar", "confusion", "class_mcnemar")
            )
        )


@dataclass(frozen=True)
class _Encoded:
    """One prediction table as integer codes: `true`, `pred` (n,), `probs` (n, K) or None."""

    true: np.ndarray
    pred: np.ndarray
    probs: np.ndarray | None


# --------------------------------------------------------------------------------------------------
# Input checks and encoding


def _as_text(values: pd.Series) -> np.ndarray:
    """Values as strings, missing values as "" (so CSV round trips compare equal)."""
    return np.array(["" if pd.isna(v) else str(v) for v in values], dtype=object)


def _check_table(table: pd.DataFrame, name: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{name} predictions lack columns {missing}; have {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{name} predictions are empty")
    duplicated = table["filename"][table["filename"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{name} predictions repeat filenames, e.g. {list(duplicated.iloc[:3])}")


def _encode(table: pd.DataFrame, labels: Sequence[str], name: str) -> _Encoded:
    """Integer class codes of `label` and `predicted`; probabilities when every prob_<label> is present."""
    index = {label: k for k, label in enumerate(labels)}
    codes = []
    for column in ("label", "predicted"):
        text = _as_text(table[column])
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"{name} predictions: {column} has values {unknown} outside the classes {list(labels)}")
        codes.append(np.array([index[v] for v in text], dtype=np.int64))
    prob_columns = [f"prob_{label}" for label in labels]
    probs = None
    if all(c in table.columns for c in prob_columns):
        values = table[prob_columns].to_numpy(dtype=float)
        probs = values if np.isfinite(values).all() else None
    return _Encoded(codes[0], codes[1], probs)


def _first_differences(name: str, left: np.ndarray, right: np.ndarray, filenames: np.ndarray) -> None:
    differ = left != right
    if differ.any():
        examples = ", ".join(
            f"{f}: {a!r} vs {b!r}" for f, a, b in zip(filenames[differ][:3], left[differ], right[differ], strict=False)
        )
        raise ValueError(f"before and after are not paired: {differ.sum()} images differ in {name} ({examples})")


def _pair(
    before: pd.DataFrame, after: pd.DataFrame, strata: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Align `after` to `before` by filename and check they describe the same images.

    Returns (before, after aligned, stratum columns as text). A stratum column may sit in either
    table; where it is in both it must agree.
    """
    _check_table(before, "before")
    _check_table(after, "after")
    only_before = sorted(set(before["filename"]) - set(after["filename"]))
    only_after = sorted(set(after["filename"]) - set(before["filename"]))
    if only_before or only_after:
        raise ValueError(
            f"before and after are not paired: {len(only_before)} filenames only in before {only_before[:3]}, "
            f"{len(only_after)} only in after {only_after[:3]}"
        )
    before = before.reset_index(drop=True)
    after = after.set_index("filename").loc[before["filename"]].reset_index()
    filenames = before["filename"].to_numpy()
    shared = ["label", "patient_id"] + [c for c in strata if c in before.columns and c in after.columns]
    for column in shared:
        _first_differences(column, _as_text(before[column]), _as_text(after[column]), filenames)
    columns = {}
    for column in strata:
        source = before if column in before.columns else after if column in after.columns else None
        if source is not None:
            columns[column] = _as_text(source[column])
    return before, after, pd.DataFrame(columns, index=before.index)


def _strata(strata_frame: pd.DataFrame) -> Iterator[tuple[str, str, np.ndarray]]:
    """(stratum_kind, stratum, boolean mask): all images, then each non-empty value of each stratum column."""
    n = len(strata_frame)
    yield "all", "all", np.ones(n, dtype=bool)
    for kind in strata_frame.columns:
        values = strata_frame[kind].to_numpy()
        for value in sorted(set(values) - {""}):
            yield kind, value, values == value


# --------------------------------------------------------------------------------------------------
# Metrics of one model under image weights (pipeline.statistics)


def metric_values(encoded: _Encoded, weights: np.ndarray, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Every metric of one model under image weights (B, n) -> {name: (B,)} (AUCs only with probabilities)."""
    values = confusion_metrics(weighted_confusion(encoded.true, encoded.pred, weights, len(labels)), labels)
    if encoded.probs is not None:
        aucs = {
            f"auc_{label}": weighted_roc_auc(encoded.probs[:, k], encoded.true == k, weights)
            for k, label in enumerate(labels)
        }
        values.update(aucs)
        values["macro_auc"] = mean_of_finite(np.stack(list(aucs.values()), axis=-1))
    return values


# --------------------------------------------------------------------------------------------------
# Public entry points


def _subset(encoded: _Encoded, mask: np.ndarray) -> _Encoded:
    return _Encoded(encoded.true[mask], encoded.pred[mask], None if encoded.probs is None else encoded.probs[mask])


def _stratum_metrics(
    models: Mapping[str, _Encoded],
    patients: np.ndarray,
    labels: Sequence[str],
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> list[tuple[str, str, int, float, float, float]]:
    """(model, metric, n, value, ci_low, ci_high) rows for a, b and b − a on one stratum; no interval for a
    metric resting on fewer than MIN_INTERVAL_N images (`metric_counts`)."""
    _, codes = np.unique(patients, return_inverse=True)
    resamples = cluster_weights(codes, n_resamples, rng)
    ones = np.ones((1, len(patients)))
    point = {m: metric_values(e, ones, labels) for m, e in models.items()}
    boot = {m: metric_values(e, resamples, labels) for m, e in models.items()}
    shared = [name for name in point["a"] if name in point["b"]]
    point[DIFFERENCE] = {name: point["b"][name] - point["a"][name] for name in shared}
    boot[DIFFERENCE] = {name: boot["b"][name] - boot["a"][name] for name in shared}
    counts = {m: metric_counts(e, labels) for m, e in models.items()}
    counts[DIFFERENCE] = {name: min(counts["a"][name], counts["b"][name]) for name in shared}
    rows = []
    for model in (*MODELS, DIFFERENCE):
        names = list(point[model])
        low, high = percentile_interval(np.stack([boot[model][name] for name in names], axis=1), confidence)
        for j, name in enumerate(names):
            value, n = float(point[model][name][0]), counts[model][name]
            no_interval = np.isnan(value) or n < MIN_INTERVAL_N
            rows.append((model, name, n, value, np.nan if no_interval else low[j], np.nan if no_interval else high[j]))
    return rows


def metric_counts(encoded: _Encoded, labels: Sequence[str]) -> dict[str, int]:
    """The images each metric of `metric_values` rests on: recall of c, the images of class c; precision, those
    predicted c; F1, those of class c or predicted c; AUC of c, the smaller of its positives and negatives;
    the overall and macro metrics, every image. For b − a the smaller count of the two models is used."""
    n = len(encoded.true)
    counts = {name: n for name in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                                   "macro_auc")}
    for k, label in enumerate(labels):
        true, predicted = encoded.true == k, encoded.pred == k
        counts.update({f"precision_{label}": int(predicted.sum()), f"recall_{label}": int(true.sum()),
                       f"f1_{label}": int((true | predicted).sum()),
                       f"auc_{label}": int(min(true.sum(), n - true.sum()))})
    return counts


def _confusion_rows(split: str, models: Mapping[str, _Encoded], labels: Sequence[str]) -> list[tuple]:
    rows = []
    for model, encoded in models.items():
        counts = weighted_confusion(encoded.true, encoded.pred, np.ones((1, len(encoded.true))), len(labels))[0]
        fractions = divide_or_nan(counts, counts.sum(axis=1, keepdims=True))
        rows += [
            (split, model, t, p, int(counts[i, j]), fractions[i, j])
            for i, t in enumerate(labels)
            for j, p in enumerate(labels)
        ]
    return rows


def compare_predictions(
    before: pd.DataFrame,
    after: pd.DataFrame,
    *,
    strata: Sequence[str] = DEFAULT_STRATA,
    labels: Sequence[str] = DEFAULT_LABELS,
    split: str = "test",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare a (`before`) with b (`after`) on the same test images of one split.

    Tables have the columns of `predictions/<m>_<split>.csv`; `flagged` (or any name in `strata`) may be
    present in either. Raises ValueError when the tables are not the same images (filenames, labels,
    patients, stratum values) or hold a class outside `labels`.
    """
    before, after, strata_frame = _pair(before, after, strata)
    labels = list(labels)
    encoded = {"a": _encode(before, labels, "before"), "b": _encode(after, labels, "after")}
    patients = _as_text(before["patient_id"])
    rng = np.random.default_rng(seed)
    metric_rows, mcnemar_rows, class_rows = [], [], []
    for kind, stratum, mask in _strata(strata_frame):
        models = {m: _subset(e, mask) for m, e in encoded.items()}
        key = (split, kind, stratum)
        metric_rows += [
            (*key, *row) for row in _stratum_metrics(models, patients[mask], labels, n_resamples, confidence, rng)
        ]
        correct = {m: e.pred == e.true for m, e in models.items()}
        mcnemar_rows.append(
            (
                *key,
                *mcnemar_counts(correct["a"], correct["b"]).values(),
                *stuart_maxwell(models["a"].pred, models["b"].pred, len(labels)).values(),
            )
        )
        for k, label in enumerate(labels):
            of_class = models["a"].true == k
            if of_class.any():
                class_rows.append(
                    (*key, label, *mcnemar_counts(correct["a"][of_class], correct["b"][of_class]).values())
                )
    return Comparison(
        metrics=pd.DataFrame(metric_rows, columns=METRICS_COLUMNS),
        mcnemar=pd.DataFrame(mcnemar_rows, columns=MCNEMAR_COLUMNS),
        confusion=pd.DataFrame(_confusion_rows(split, encoded, labels), columns=CONFUSION_COLUMNS),
        class_mcnemar=pd.DataFrame(class_rows, columns=CLASS_MCNEMAR_COLUMNS),
    )


def compare_splits(pairs: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], **options: Any) -> Comparison:
    """`compare_predictions` on each split ({split: (before, after)}: A's table, then B's) with the same options;
    tables stacked."""
    return Comparison.concat([compare_predictions(before, after, split=split, **options)
                              for split, (before, after) in pairs.items()])


def seed_summary(
    tables: Sequence[pd.DataFrame],
    *,
    strata: Sequence[str] = DEFAULT_STRATA,
    labels: Sequence[str] = DEFAULT_LABELS,
) -> pd.DataFrame:
    """Mean ± sd across training seeds: one prediction table per seed of one arm, on the same split.

    Returns `stratum_kind, stratum, metric, mean, sd, n_seeds` (sd with ddof=1, NaN for one seed;
    `n_seeds` counts the seeds where the metric is defined).
    """
    labels = list(labels)
    rows = []
    for seed_index, table in enumerate(tables):
        _check_table(table, f"seed {seed_index}")
        encoded = _encode(table, labels, f"seed {seed_index}")
        present = [c for c in strata if c in table.columns]
        for kind, stratum, mask in _strata(pd.DataFrame({c: _as_text(table[c]) for c in present})):
            values = metric_values(_subset(encoded, mask), np.ones((1, int(mask.sum()))), labels)
            rows += [(kind, stratum, name, float(v[0])) for name, v in values.items()]
    per_seed = pd.DataFrame(rows, columns=["stratum_kind", "stratum", "metric", "value"])
    grouped = per_seed.groupby(["stratum_kind", "stratum", "metric"], sort=False)["value"]
    return grouped.agg(mean="mean", sd="std", n_seeds="count").reset_index()


def headline(comparison: Comparison, *, label: str = "COVID-19", metric: str = "recall") -> pd.DataFrame:
    """Per split, on all images: `<metric>_<label>` of a and b, b − a with its interval, and McNemar p-values.

    `mcnemar_p` tests correctness on all images; `class_mcnemar_p` tests correctness on the images
    whose true class is `label`, which for recall is the paired test of the recall difference.
    """
    name = f"{metric}_{label}"
    metrics = comparison.metrics
    rows = metrics[(metrics["stratum_kind"] == "all") & (metrics["metric"] == name)]
    wide = rows.pivot(index="split", columns="model", values=["value", "ci_low", "ci_high"])
    out = pd.DataFrame(index=wide.index)
    for model, prefix in (("a", "a"), ("b", "b"), (DIFFERENCE, "difference")):
        out[prefix] = wide[("value", model)]
        out[f"{prefix}_ci_low"] = wide[("ci_low", model)]
        out[f"{prefix}_ci_high"] = wide[("ci_high", model)]
    overall = comparison.mcnemar[comparison.mcnemar["stratum_kind"] == "all"].set_index("split")
    by_class = comparison.class_mcnemar
    by_class = by_class[(by_class["stratum_kind"] == "all") & (by_class["label"] == label)].set_index("split")
    out["mcnemar_p"] = overall["p_value"]
    out["class_mcnemar_p"] = by_class["p_value"]
    out[f"n_{label}"] = by_class["n"]
    out.insert(0, "metric", name)
    order = list(dict.fromkeys(metrics["split"]))
    return out.loc[[s for s in order if s in out.index]].reset_index()


def write_comparison(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write `out_dir/compare/{metrics,mcnemar,confusion,class_mcnemar}.csv` atomically; returns the paths."""
    folder = Path(out_dir) / "compare"
    tables = {**comparison.tables()._asdict(), "class_mcnemar": comparison.class_mcnemar}
    return [write_text(folder / f"{name}.csv", table.to_csv(index=False)) for name, table in tables.items()]
