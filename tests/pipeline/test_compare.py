"""Tests of pipeline.compare and pipeline.statistics: hand-counted metrics, scikit-learn cross-checks, paired
tests, bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support, roc_auc_score

from pipeline.compare import (
    DEFAULT_LABELS,
    MIN_INTERVAL_N,
    Comparison,
    compare_predictions,
    compare_splits,
    headline,
    seed_summary,
    write_comparison,
)
from pipeline.statistics import (
    cluster_weights,
    mcnemar_counts,
    percentile_interval,
    stuart_maxwell,
    weighted_confusion,
    weighted_roc_auc,
)

N, P, C = DEFAULT_LABELS
# Ten images: true class counts 4 / 3 / 3. Confusion (rows true, columns predicted):
#   normal    [3, 1, 0]
#   pneumonia [0, 2, 1]
#   COVID-19  [1, 0, 2]
HAND_TRUE = [N, N, N, N, P, P, P, C, C, C]
HAND_PRED = [N, N, N, P, P, P, C, C, C, N]


def table(
    labels: list[str],
    predicted: list[str],
    *,
    patients: list[str] | None = None,
    probs: np.ndarray | None = None,
    **columns: list[object],
) -> pd.DataFrame:
    """A prediction table with the contract's columns (one patient per image unless given)."""
    n = len(labels)
    frame = pd.DataFrame(
        {
            "filename": [f"img{i:03d}.png" for i in range(n)],
            "patient_id": patients if patients is not None else [f"p{i}" for i in range(n)],
            "source": columns.pop("source", [""] * n),
            "label": labels,
            "predicted": predicted,
            "correct": [t == p for t, p in zip(labels, predicted, strict=True)],
            **columns,
        }
    )
    if probs is not None:
        for k, label in enumerate(DEFAULT_LABELS):
            frame[f"prob_{label}"] = probs[:, k]
    return frame


def random_tables(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired random tables with patients (several images each), 3 sources, a flag and probabilities."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 3, n)
    patients = [f"p{i}" for i in rng.integers(0, n // 3, n)]
    extra = {"source": list(rng.choice(["s1", "s2", "s3"], n)), "flagged": list(rng.random(n) < 0.3)}
    out = []
    for accuracy in (0.6, 0.8):
        pred = np.where(rng.random(n) < accuracy, true, rng.integers(0, 3, n))
        probs = rng.dirichlet(np.ones(3), n) + np.eye(3)[pred]
        labels = np.array(DEFAULT_LABELS)
        out.append(table(list(labels[true]), list(labels[pred]), patients=patients, probs=probs / 2, **extra))
    return out[0], out[1]


def metric(
    comparison: Comparison, name: str, model: str = "a", kind: str = "all", stratum: str = "all", split: str = "test"
) -> pd.Series:
    """The one metrics row of (split, stratum_kind, stratum, model, metric)."""
    rows = comparison.metrics
    key = {"split": split, "stratum_kind": kind, "stratum": stratum, "model": model, "metric": name}
    row = rows[np.logical_and.reduce([rows[column] == value for column, value in key.items()])]
    assert len(row) == 1, key
    return row.iloc[0]


def test_metrics_match_hand_counts_and_sklearn() -> None:
    before = table(HAND_TRUE, HAND_PRED)
    after = table(HAND_TRUE, HAND_TRUE)
    result = compare_predictions(before, after, n_resamples=200)
    hand = {
        "accuracy": 0.7,
        "precision_normal": 3 / 4,
        "recall_normal": 3 / 4,
        "f1_normal": 3 / 4,
        "precision_pneumonia": 2 / 3,
        "recall_pneumonia": 2 / 3,
        "precision_COVID-19": 2 / 3,
        "recall_COVID-19": 2 / 3,
        "f1_COVID-19": 2 / 3,
        "balanced_accuracy": (3 / 4 + 2 / 3 + 2 / 3) / 3,
        "macro_f1": (3 / 4 + 2 / 3 + 2 / 3) / 3,
    }
    for name, value in hand.items():
        assert metric(result, name)["value"] == pytest.approx(value), name
        assert metric(result, name, "b")["value"] == 1.0
        assert metric(result, name, "b-a")["value"] == pytest.approx(1.0 - value)
    precision, recall, f1, _ = precision_recall_fscore_support(HAND_TRUE, HAND_PRED, labels=list(DEFAULT_LABELS))
    for k, label in enumerate(DEFAULT_LABELS):
        assert metric(result, f"precision_{label}")["value"] == pytest.approx(precision[k])
        assert metric(result, f"recall_{label}")["value"] == pytest.approx(recall[k])
        assert metric(result, f"f1_{label}")["value"] == pytest.approx(f1[k])
    assert metric(result, "balanced_accuracy")["value"] == pytest.approx(balanced_accuracy_score(HAND_TRUE, HAND_PRED))

    confusion = result.confusion[result.confusion["model"] == "a"]
    counts = confusion.pivot(index="true", columns="predicted", values="count").loc[list(DEFAULT_LABELS)]
    np.testing.assert_array_equal(counts[list(DEFAULT_LABELS)].to_numpy(), [[3, 1, 0], [0, 2, 1], [1, 0, 2]])
    fraction = confusion.set_index(["true", "predicted"])["row_fraction"]
    assert fraction[(N, P)] == pytest.approx(1 / 4)
    assert fraction[(C, N)] == pytest.approx(1 / 3)


def test_fast_metrics_match_sklearn_on_every_stratum() -> None:
    before, after = random_tables()
    result = compare_predictions(before, after, n_resamples=50)
    for model, frame in (("a", before), ("b", after)):
        strata = [("all", "all", np.ones(len(frame), bool))]
        strata += [("source", s, frame["source"].to_numpy() == s) for s in ("s1", "s2", "s3")]
        strata += [("flagged", str(f), frame["flagged"].to_numpy() == f) for f in (True, False)]
        for kind, stratum, mask in strata:
            part = frame[mask]
            y, p = part["label"], part["predicted"]

            def value(name: str, kind: str = kind, stratum: str = stratum, model: str = model) -> float:
                return metric(result, name, model, kind, stratum)["value"]

            assert value("accuracy") == pytest.approx(accuracy_score(y, p))
            assert value("balanced_accuracy") == pytest.approx(balanced_accuracy_score(y, p))
            for average in ("macro", None):
                sk = precision_recall_fscore_support(
                    y, p, labels=list(DEFAULT_LABELS), average=average, zero_division=np.nan
                )
                names = ("precision", "recall", "f1")
                for name, expected in zip(names, sk[:3], strict=True):
                    if average:
                        assert value(f"macro_{name}") == pytest.approx(expected)
                    else:
                        got = [value(f"{name}_{label}") for label in DEFAULT_LABELS]
                        np.testing.assert_allclose(got, expected)
            for label in DEFAULT_LABELS:
                expected = roc_auc_score(y == label, part[f"prob_{label}"])
                assert value(f"auc_{label}") == pytest.approx(expected)


def test_weighted_counts_equal_repeated_images() -> None:
    rng = np.random.default_rng(1)
    true, pred = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    scores = np.round(rng.random(40), 1)  # ties on purpose
    weights = rng.integers(0, 4, (1, 40)).astype(float)
    repeat = weights[0].astype(int)
    confusion = weighted_confusion(true, pred, weights, 3)[0]
    np.testing.assert_array_equal(confusion, pd.crosstab(np.repeat(true, repeat), np.repeat(pred, repeat)).to_numpy())
    auc = weighted_roc_auc(scores, true == 2, weights)[0]
    assert auc == pytest.approx(roc_auc_score(true == 2, scores, sample_weight=weights[0]))


def test_roc_auc_hand_case_with_tie() -> None:
    # Positives 0.9, 0.6; negatives 0.7, 0.1, 0.6: wins 3 + (1 + ½ tie) = 4.5 of 6 pairs.
    scores = np.array([0.9, 0.6, 0.7, 0.1, 0.6])
    positive = np.array([True, True, False, False, False])
    assert weighted_roc_auc(scores, positive, np.ones((1, 5)))[0] == pytest.approx(0.75)
    assert np.isnan(weighted_roc_auc(scores, np.zeros(5, bool), np.ones((1, 5)))[0])


def test_mcnemar_exact_known_tables() -> None:
    correct_a = np.array([True] * 4 + [False] * 6)
    correct_b = np.ones(10, bool)
    counts = mcnemar_counts(correct_a, correct_b)
    assert (counts["both_correct"], counts["a_only"], counts["b_only"], counts["both_wrong"]) == (4, 0, 6, 0)
    assert counts["p_value"] == pytest.approx(2 * 0.5**6)
    # b = 1, c = 4: two-sided exact p = 2 · P(X ≤ 1 | n=5, ½) = 2 · 6/32.
    correct_a = np.array([True, False, False, False, False, True])
    correct_b = np.array([False, True, True, True, True, True])
    assert mcnemar_counts(correct_a, correct_b)["p_value"] == pytest.approx(12 / 32)
    assert mcnemar_counts(correct_b, correct_b)["p_value"] == 1.0


def test_mcnemar_table_of_comparison() -> None:
    result = compare_predictions(table(HAND_TRUE, HAND_PRED), table(HAND_TRUE, HAND_TRUE), n_resamples=20)
    row = result.mcnemar.iloc[0]
    assert (row["n"], row["both_correct"], row["a_only"], row["b_only"], row["both_wrong"]) == (10, 7, 0, 3, 0)
    assert row["p_value"] == pytest.approx(2 * 0.5**3)
    covid = result.class_mcnemar.set_index("label").loc[C]
    assert (covid["n"], covid["b_only"], covid["p_value"]) == (3, 1, 1.0)


def test_stuart_maxwell_matches_formula() -> None:
    # a × b prediction table [[5, 1, 2], [2, 3, 0], [1, 4, 2]].
    table_ab = np.array([[5, 1, 2], [2, 3, 0], [1, 4, 2]])
    pred_a = np.repeat(np.arange(3), table_ab.sum(axis=1))
    pred_b = np.concatenate([np.repeat(np.arange(3), row) for row in table_ab])
    d = (table_ab.sum(axis=1) - table_ab.sum(axis=0))[:2]
    s = -(table_ab + table_ab.T)[:2, :2].astype(float)
    np.fill_diagonal(s, (table_ab.sum(axis=1) + table_ab.sum(axis=0) - 2 * np.diag(table_ab))[:2])
    statistic = d @ np.linalg.solve(s, d)
    result = stuart_maxwell(pred_a, pred_b, 3)
    assert result["stuart_maxwell_statistic"] == pytest.approx(statistic)
    assert result["stuart_maxwell_df"] == 2
    same = stuart_maxwell(pred_a, pred_a, 3)
    assert (same["stuart_maxwell_statistic"], same["stuart_maxwell_p"]) == (0.0, 1.0)


def test_intervals_contain_point_estimates_and_percentiles_match_numpy() -> None:
    before, after = random_tables()
    rows = compare_predictions(before, after, n_resamples=300).metrics.dropna(subset=["value", "ci_low"])
    assert (rows["ci_low"] <= rows["value"] + 1e-12).all()
    assert (rows["value"] <= rows["ci_high"] + 1e-12).all()
    samples = np.random.default_rng(2).normal(size=(101, 4))
    samples[::3, 1] = np.nan
    samples[:, 3] = np.nan
    low, high = percentile_interval(samples, 0.9)
    np.testing.assert_allclose(low[:3], np.nanquantile(samples[:, :3], 0.05, axis=0))
    np.testing.assert_allclose(high[:3], np.nanquantile(samples[:, :3], 0.95, axis=0))
    assert np.isnan(low[3]) and np.isnan(high[3])


def test_perfect_models_give_zero_width_intervals() -> None:
    before, _ = random_tables()
    perfect = before.assign(predicted=before["label"])
    probs = np.stack([(perfect["label"] == label).to_numpy(float) for label in DEFAULT_LABELS], axis=1)
    perfect[[f"prob_{label}" for label in DEFAULT_LABELS]] = probs
    rows = compare_predictions(perfect, perfect.copy(), n_resamples=200).metrics
    rows = rows[rows["n"] >= MIN_INTERVAL_N]
    assert not rows[["value", "ci_low", "ci_high"]].isna().any().any()
    assert (rows["ci_low"] == rows["ci_high"]).all()
    assert (rows.loc[rows["model"] != "b-a", "value"] == 1.0).all()
    assert (rows.loc[rows["model"] == "b-a", "value"] == 0.0).all()


def test_patient_resampling_widens_interval_for_clustered_images() -> None:
    # One patient has 20 images that a gets wrong and b right; 20 other patients have one image each.
    labels = [C] * 20 + [N] * 20
    before = [N] * 20 + [N] * 20
    patients = ["big"] * 20 + [f"p{i}" for i in range(20)]
    clustered = compare_predictions(
        table(labels, before, patients=patients), table(labels, labels, patients=patients), n_resamples=1000
    )
    per_image = compare_predictions(table(labels, before), table(labels, labels), n_resamples=1000)

    def width(result) -> float:
        row = metric(result, "accuracy", "b-a")
        return row["ci_high"] - row["ci_low"]

    assert metric(clustered, "accuracy", "b-a")["value"] == metric(per_image, "accuracy", "b-a")["value"] == 0.5
    assert width(clustered) > 1.5 * width(per_image)


def test_cluster_weights_move_patients_together() -> None:
    patients = np.array([0, 0, 0, 1, 2, 2])
    weights = cluster_weights(patients, 500, np.random.default_rng(0))
    assert weights.shape == (500, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 4] == weights[:, 5]).all()
    np.testing.assert_array_equal(weights[:, [0, 3, 4]].sum(axis=1), 3)  # 3 patients drawn each time
    assert weights[:, 3].mean() == pytest.approx(1.0, abs=0.1)


def test_unpaired_tables_raise() -> None:
    before = table(HAND_TRUE, HAND_PRED)
    with pytest.raises(ValueError, match="filenames only in before"):
        compare_predictions(before, before.iloc[1:], n_resamples=10)
    relabelled = before.copy()
    relabelled.loc[2, "label"] = C
    with pytest.raises(ValueError, match=r"differ in label \(img002.png"):
        compare_predictions(before, relabelled, n_resamples=10)
    repatient = before.assign(patient_id="same")
    with pytest.raises(ValueError, match="differ in patient_id"):
        compare_predictions(before, repatient, n_resamples=10)
    with pytest.raises(ValueError, match="outside the classes"):
        compare_predictions(before, before.assign(predicted="cat"), n_resamples=10)
    with pytest.raises(ValueError, match="repeat filenames"):
        compare_predictions(pd.concat([before, before]), before, n_resamples=10)


def test_after_order_and_flag_from_one_table() -> None:
    before = table(HAND_TRUE, HAND_PRED)
    after = table(HAND_TRUE, HAND_TRUE, flagged=[True] * 5 + [False] * 5).iloc[::-1]
    result = compare_predictions(before, after, n_resamples=50)
    assert metric(result, "accuracy", "b")["value"] == 1.0
    assert metric(result, "accuracy", "a", "flagged", "True")["value"] == pytest.approx(4 / 5)
    assert metric(result, "accuracy", "a", "flagged", "False")["value"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="differ in flagged"):
        compare_predictions(before.assign(flagged=True), after, n_resamples=10)


def test_metrics_count_their_images_and_small_counts_get_no_interval() -> None:
    before, after = random_tables()
    rows = compare_predictions(before, after, n_resamples=100).metrics
    for model, table_ in (("a", before), ("b", after)):
        overall = rows[(rows.stratum_kind == "all") & (rows.model == model)].set_index("metric")
        assert overall.loc["accuracy", "n"] == len(table_)
        assert overall.loc["recall_COVID-19", "n"] == (table_.label == "COVID-19").sum()
        assert overall.loc["precision_COVID-19", "n"] == (table_.predicted == "COVID-19").sum()
        f1_images = (table_.label == "COVID-19") | (table_.predicted == "COVID-19")
        assert overall.loc["f1_COVID-19", "n"] == f1_images.sum()
        positives = (table_.label == "normal").sum()
        assert overall.loc["auc_normal", "n"] == min(positives, len(table_) - positives)
    a, b, difference = (rows[(rows.stratum_kind == "all") & (rows.model == m)].set_index("metric")
                        for m in ("a", "b", "b-a"))
    assert (difference.n == np.minimum(a.n, b.n)).all()
    few = rows[rows.n < MIN_INTERVAL_N]
    enough = rows[(rows.n >= MIN_INTERVAL_N) & rows.value.notna()]
    assert len(few) and few[["ci_low", "ci_high"]].isna().all().all() and few.value.notna().any()
    assert len(enough) and enough[["ci_low", "ci_high"]].notna().all().all()


def test_stratum_missing_a_class_gives_nan() -> None:
    sources = ["s1"] * 7 + ["s2"] * 3  # s2 holds only COVID-19 images
    result = compare_predictions(
        table(HAND_TRUE, HAND_PRED, source=sources), table(HAND_TRUE, HAND_TRUE, source=sources), n_resamples=100
    )
    assert np.isnan(metric(result, "recall_normal", "a", "source", "s2")["value"])
    assert np.isnan(metric(result, "recall_normal", "b-a", "source", "s2")["ci_low"])
    s2_true, s2_pred = HAND_TRUE[7:], HAND_PRED[7:]
    assert metric(result, "precision_normal", "a", "source", "s2")["value"] == 0.0
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = balanced_accuracy_score(s2_true, s2_pred)
    assert metric(result, "macro_recall", "a", "source", "s2")["value"] == pytest.approx(expected)
    assert metric(result, "recall_COVID-19", "b", "source", "s2")["value"] == 1.0


def test_bootstrap_is_deterministic_by_seed() -> None:
    before, after = random_tables()
    first = compare_predictions(before, after, n_resamples=100, seed=3).metrics
    pd.testing.assert_frame_equal(first, compare_predictions(before, after, n_resamples=100, seed=3).metrics)
    other = compare_predictions(before, after, n_resamples=100, seed=4).metrics
    pd.testing.assert_series_equal(first["value"], other["value"])
    assert not np.allclose(first["ci_low"], other["ci_low"], equal_nan=True)


def test_splits_headline_and_written_tables(tmp_path) -> None:
    pairs = {"test": random_tables(seed=0), "test_pp": random_tables(seed=1)}
    result = compare_splits(pairs, n_resamples=100)
    assert list(dict.fromkeys(result.metrics["split"])) == ["test", "test_pp"]
    top = headline(result)
    assert list(top["split"]) == ["test", "test_pp"]
    for _, row in top.iterrows():
        split = row["split"]
        assert row["a"] == metric(result, "recall_COVID-19", "a", split=split)["value"]
        assert row["b"] == metric(result, "recall_COVID-19", "b", split=split)["value"]
        assert row["difference_ci_low"] == metric(result, "recall_COVID-19", "b-a", split=split)["ci_low"]
        before, after = pairs[split]
        covid = (before["label"] == C).to_numpy()
        assert row["mcnemar_p"] == mcnemar_counts(before["correct"].to_numpy(), after["correct"].to_numpy())["p_value"]
        expected = mcnemar_counts(before["correct"].to_numpy()[covid], after["correct"].to_numpy()[covid])
        assert (row["class_mcnemar_p"], row["n_COVID-19"]) == (expected["p_value"], covid.sum())

    paths = write_comparison(result, tmp_path)
    assert sorted(p.name for p in (tmp_path / "compare").iterdir()) == sorted(p.name for p in paths)
    metrics = pd.read_csv(tmp_path / "compare" / "metrics.csv", keep_default_na=False, na_values=[""])
    assert list(metrics.columns) == [
        "split",
        "stratum_kind",
        "stratum",
        "model",
        "metric",
        "n",
        "value",
        "ci_low",
        "ci_high",
    ]
    np.testing.assert_allclose(metrics["value"], result.metrics["value"])
    tables = result.tables()
    assert list(tables.confusion.columns)[:5] == ["split", "model", "true", "predicted", "count"]
    assert list(tables.mcnemar.columns)[:9] == [
        "split", "stratum_kind", "stratum", "n", "both_correct", "a_only", "b_only", "both_wrong", "p_value",
    ]  # fmt: skip


def test_seed_summary_mean_and_sd() -> None:
    seed_1 = table(HAND_TRUE, HAND_PRED, source=["s1"] * 10)  # accuracy 0.7
    seed_2 = table(HAND_TRUE, [*HAND_PRED[:9], C], source=["s1"] * 10)  # accuracy 0.8
    summary = seed_summary([seed_1, seed_2]).set_index(["stratum_kind", "stratum", "metric"])
    accuracy = summary.loc[("all", "all", "accuracy")]
    assert accuracy["mean"] == pytest.approx(0.75)
    assert accuracy["sd"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert accuracy["n_seeds"] == 2
    assert summary.loc[("source", "s1", "recall_COVID-19"), "mean"] == pytest.approx(5 / 6)
