"""The section "Did cleaning remove the shortcut?": its verdicts on known probe tables, and the section itself on a
run folder written by hand (docs/run-directory.md's probes/ files)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from reports.blocks import Run, Table, Text
from reports.probes_section import TITLE, leakage_verdict, probes_section, shortcut_verdict, source_verdict

NAN = math.nan
SOURCES = {"rsna": 30, "ricord": 25}  # test films per source


def source_table(aucs: dict[str, tuple[float, float, float]], films: dict[str, int] = SOURCES) -> pd.DataFrame:
    """source.csv with the mean ("all") AUC and interval of each view as given, and each source's films."""
    rows = []
    total = sum(films.values())
    for view, (auc, low, high) in aucs.items():
        rows.append((view, "all", total, total, 0, auc, low, high))
        for name, n in films.items():
            rows.append((view, name, min(n, total - n), n, total - n, auc, NAN, NAN))
    return pd.DataFrame(rows, columns=["view", "stratum", "n", "positives", "negatives", "auc", "ci_low", "ci_high"])


def leakage_table(*rows: tuple[str, float, float, float]) -> pd.DataFrame:
    return pd.DataFrame([(variant, 20, 20, 40, auc, low, high) for variant, auc, low, high in rows],
                        columns=["variant", "n", "positives", "negatives", "auc", "ci_low", "ci_high"])


@pytest.mark.parametrize(("aucs", "films", "expected"), [
    ({"whole": (0.91, 0.86, 0.95), "cleaned": (0.87, 0.80, 0.93)}, SOURCES,
     "The source is still recognisable after cleaning (AUC 0.870 [0.800, 0.930] (n=55) vs 0.910 on the original "
     "films): cleaning did not remove the source cue."),
    ({"whole": (0.95, 0.92, 0.98), "cleaned": (0.70, 0.60, 0.80)}, SOURCES,
     "The source is still recognisable after cleaning, less than on the original films (AUC 0.700 [0.600, 0.800] "
     "(n=55) vs 0.950 on the original films): cleaning weakened the source cue but did not remove it."),
    ({"whole": (0.93, 0.88, 0.97), "cleaned": (0.52, 0.41, 0.63)}, SOURCES,
     "The source is no longer recognisable after cleaning (AUC 0.520 [0.410, 0.630] (n=55) vs 0.930 on the "
     "original films; chance 0.5): cleaning removed the source cue this probe can find."),
    ({"whole": (0.55, 0.45, 0.65), "cleaned": (0.50, 0.40, 0.60)}, SOURCES,
     "Cannot say: the probe does not recognise the source even on the original films (AUC 0.550 [0.450, 0.650] "
     "(n=55)), so it cannot show what cleaning removed."),
    ({"whole": (0.91, 0.86, 0.95), "cleaned": (0.87, 0.80, 0.93)}, {"rsna": 30, "ricord": 4, "sirm": 0},
     "Cannot say: fewer than 10 test films per source (ricord: 4, sirm: 0)."),
    ({"whole": (0.91, NAN, NAN), "cleaned": (0.87, NAN, NAN)}, SOURCES,
     "Cannot say: the AUCs have no interval (probes.n_resamples is 0)."),
    ({"whole": (0.91, 0.86, 0.95)}, SOURCES, "Cannot say: the original and cleaned films were not both probed."),
])
def test_the_source_verdict_follows_the_reading_rules(aucs, films, expected):
    assert source_verdict(source_table(aucs, films)) == expected


def test_the_leakage_verdict_needs_an_interval_and_names_the_variants_that_leak():
    assert leakage_verdict(leakage_table(("whole", 0.6, NAN, NAN))) is None
    assert leakage_verdict(leakage_table(("whole", 0.52, 0.45, 0.6), ("patches", 0.81, 0.7, 0.9))) == (
        "A cleaned film can be told from a never-texted one (patches: AUC 0.810 [0.700, 0.900] (n=20)): COVIDx++ "
        "carries a mark of cleaning, a new shortcut where it follows the label.")
    assert leakage_verdict(leakage_table(("whole", 0.52, 0.45, 0.6))) == (
        "A cleaned film cannot be told from a never-texted one (whole: AUC 0.520 [0.450, 0.600] (n=20)).")


def test_the_summary_verdict_is_null_without_source_probes_and_joins_the_leakage_line():
    assert shortcut_verdict(None, None) is None
    assert shortcut_verdict(source_table({}).iloc[0:0], leakage_table(("whole", 0.9, 0.8, 0.95))) is None
    joined = shortcut_verdict(source_table({"whole": (0.93, 0.88, 0.97), "cleaned": (0.52, 0.41, 0.63)}),
                              leakage_table(("patches", 0.81, 0.7, 0.9)))
    assert joined.startswith("The source is no longer recognisable") and joined.endswith("follows the label.")


def write_probes(root, skipped: dict[str, str]) -> None:
    folder = root / "probes"
    folder.mkdir(parents=True)
    status = {"audit_split": "test", "films": {"train": 100, "test": 55}, "sources": sorted(SOURCES),
              "generator_lung_masks": 0, "cleaned": {"train": 40, "test": 20},
              "never_texted": {"train": 40, "test": 20}, "left_out": {"no COVIDx++ copy": 1}, "skipped": skipped}
    (folder / "status.json").write_text(json.dumps(status))
    aucs = {view: (0.9, 0.85, 0.95) for view in ("whole", "text_only", "lungs_masked", "cleaned")}
    source_table(aucs).to_csv(folder / "source.csv", index=False)
    leakage_table(("whole", 0.5, 0.4, 0.6)).iloc[0:0].to_csv(folder / "leakage.csv", index=False)
    correlation = ["variant", "label", "n", "films", "cleaned_share", "correlation", "ci_low", "ci_high"]
    pd.DataFrame(columns=correlation).to_csv(folder / "leakage_correlation.csv", index=False)
    pd.DataFrame([("train", "train", "accuracy", 100, 0.8, 0.7, 0.9),
                  ("test", "train", "accuracy", 55, 0.75, 0.6, 0.85),
                  ("test", "self", "accuracy", 55, 0.78, 0.65, 0.88),
                  ("test", "train", "majority_rate", 55, 0.4, 0.3, 0.5)],
                 columns=["split", "fitted_on", "metric", "n", "value", "ci_low", "ci_high"]).to_csv(
        folder / "label_from_source.csv", index=False)


def test_the_section_shows_verdict_tables_reasons_and_the_classifiers_accuracy(tmp_path):
    assert probes_section(Run(tmp_path), None) is None  # the stage was off: no section
    write_probes(tmp_path, {"leakage": "the test films hold only cleaned films"})
    metrics = pd.DataFrame([("test", "all", "all", m, "accuracy", 55, value, value - 0.1, value + 0.1)
                            for m, value in (("a", 0.9), ("b", 0.7))],
                           columns=["split", "stratum_kind", "stratum", "model", "metric", "n", "value", "ci_low",
                                    "ci_high"])
    section = probes_section(Run(tmp_path), metrics)
    assert section.title == TITLE
    texts = [block.text for block in section.blocks if isinstance(block, Text)]
    assert "The source is still recognisable after cleaning (AUC 0.900 [0.850, 0.950] (n=55)" in texts[1]
    assert "Cleaning-leakage probe: not run: the test films hold only cleaned films." in texts
    assert any(text.startswith("The detected text alone names the source") for text in texts)
    tables = {block.caption.split(":")[0]: block.frame for block in section.blocks if isinstance(block, Table)}
    assert list(tables["Source probes"].source) == ["all", "ricord", "rsna"]
    assert list(tables["Source probes"].columns) == ["source", "whole", "text_only", "lungs_masked", "cleaned"]
    label = tables["Label from source"].set_index("split")
    assert label.loc["test", "A"] == "0.900 [0.800, 1.000] (n=55)" and label.loc["test", "B"].startswith("0.700")
    assert label.loc["test", "source alone (fitted on the split: ceiling)"].startswith("0.780")
    assert label.loc["train", "A"] == ""  # the classifiers are not scored on their training split


def test_label_correlations_are_shown_only_for_leakage_aucs_with_an_interval(tmp_path):
    write_probes(tmp_path, {})
    folder = tmp_path / "probes"
    correlation = pd.DataFrame([(variant, label, 20, 40, 0.5, 0.1, -0.1, 0.3) for variant in ("whole", "patches")
                                for label in ("normal", "COVID-19")],
                               columns=["variant", "label", "n", "films", "cleaned_share", "correlation", "ci_low",
                                        "ci_high"])
    correlation.to_csv(folder / "leakage_correlation.csv", index=False)

    def tables_and_texts(*rows):
        leakage_table(*rows).to_csv(folder / "leakage.csv", index=False)
        section = probes_section(Run(tmp_path), None)
        tables = {block.caption.split("?")[0]: block.frame for block in section.blocks if isinstance(block, Table)}
        return tables, [block.text for block in section.blocks if isinstance(block, Text)]

    tables, _ = tables_and_texts(("whole", 0.6, NAN, NAN), ("patches", 0.55, 0.45, 0.65))
    assert list(tables["Does the leak follow the label"].variant) == ["patches", "patches"]
    tables, texts = tables_and_texts(("whole", 0.6, NAN, NAN), ("patches", 0.4, NAN, NAN))
    assert "Does the leak follow the label" not in tables
    assert "Whether a leak follows the label is not shown: no leakage AUC has an interval." in texts
    assert list(tables["Cleaning leakage: can a probe tell a cleaned film from a never-texted one"].variant) == [
        "whole", "patches"]
