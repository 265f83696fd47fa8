"""Sections 2 and 5 of the report, "Classifier A" and "Classifier B vs A": metrics with their paired-bootstrap
intervals, confusion matrices, McNemar tests, seeds, and the plain-language verdict (`verdict`) of what removing
the text changed, which the summary repeats."""

from __future__ import annotations

import math

import pandas as pd

from reports.blocks import (
    Block,
    Image,
    Run,
    Section,
    Table,
    Text,
    interval_cells,
    not_run,
    number,
    p_value,
    split_key,
    table_block,
    with_ci,
)
from reports.figures import confusion_png
from reports.saliency_shift import ShareShift, share_shift

ALPHA = 0.01  # McNemar p below this counts as a significant change
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
SHORTCUTS_NOT_TESTED = (
    "Burned-in text is one shortcut among several: source-specific processing, borders and collimation, "
    "laterality markers, patient positioning (portable films) and devices are untouched by inpainting, "
    "which does not remove source identity. These results say nothing about those."
)


def _confusion(frame: pd.DataFrame, title: str) -> list[Block]:
    """The confusion matrix of a prediction table (`label`, `predicted`) as a figure and a table."""
    labels = list(dict.fromkeys([*frame["label"], *frame["predicted"]]))
    counts = pd.crosstab(frame["label"], frame["predicted"]).reindex(index=labels, columns=labels, fill_value=0)
    table = counts.rename_axis(index="true \\ predicted", columns=None).reset_index()
    return [Image(title, confusion_png(counts.to_numpy(), labels, title)), table_block(title, table)]


def _metric_table(metrics: pd.DataFrame, model: str) -> pd.DataFrame:
    """metric × split cells "value [ci_low, ci_high]" of one model on all images."""
    rows = metrics[(metrics["model"] == model) & (metrics["stratum_kind"] == "all")]
    shown = rows.assign(cell=interval_cells(rows))
    return shown.pivot(index="metric", columns="split", values="cell").reset_index().rename_axis(columns=None)


def classifier_a_section(run: Run, metrics: pd.DataFrame | None) -> Section:
    """Section 2 from predictions/a_<split>.csv; `metrics`: compare/metrics.csv (None: not run, no intervals)."""
    section = Section(2, "Classifier A")
    predictions = run.predictions("a")
    if not predictions:
        section.missing.append("predictions/a_<split>.csv")
        return section
    if metrics is not None:
        section.blocks.append(Table("Metrics of A on each test split (95 % paired-bootstrap interval)",
                                    _metric_table(metrics, "a")))
    else:
        section.blocks.append(not_run("Intervals", "compare/metrics.csv"))
    for split, frame in predictions.items():
        section.blocks.append(Text(f"{split}: {len(frame)} images, accuracy {number(frame['correct'].mean())}."))
        section.blocks.extend(_confusion(frame, f"A on {split}: confusion matrix"))
    return section



def verdict(metrics: pd.DataFrame, mcnemar: pd.DataFrame, shift: ShareShift | None = None) -> list[str]:
    """Plain-language reading of the comparison, conditional on the numbers; `shift`: the saliency's move off
    the text between the audits of A and B, when both ran."""
    all_rows = metrics[metrics["stratum_kind"] == "all"]
    covid = next((m for m in ("recall_COVID-19", "recall_positive") if m in set(all_rows["metric"])), "macro_recall")
    tests = mcnemar[mcnemar["stratum_kind"] == "all"].set_index("split")["p_value"]
    lines = []
    for split in sorted(set(all_rows["split"]), key=split_key):
        values = all_rows[(all_rows["split"] == split) & (all_rows["metric"] == covid)].set_index("model")
        if not {"a", "b", "b-a"} <= set(values.index):
            continue
        diff, low, high = values.loc["b-a", ["value", "ci_low", "ci_high"]]
        n = values.loc["b-a"].get("n", float("nan"))
        p = tests.get(split, float("nan"))
        if not math.isnan(n) and math.isnan(low) and not math.isnan(diff):  # too few images for an interval
            lines.append(f"On {split}, {covid} rests on {int(n)} image(s) (A {number(values.loc['a', 'value'])}, "
                         f"B {number(values.loc['b', 'value'])}): too few for an interval or a verdict.")
            continue
        line = (f"On {split}, {covid} is {number(values.loc['a', 'value'])} for A and "
                f"{number(values.loc['b', 'value'])} for B: difference {with_ci(diff, low, high, n)}, "
                f"McNemar p = {p_value(p) or 'not computed'}.")
        if not p < ALPHA:
            line += (f" Not significant at p < {ALPHA}: the numbers do not show that removing the text changed "
                     "the classifier here.")
        elif diff == 0:
            line += f" A and B err on different images (McNemar), but {covid} did not change."
        elif split == "test_decorrelated":
            line += (" On this split text and label are independent, so the text shortcut was real and removing "
                     "it helped." if diff > 0 else " On this split text and label are independent: removing the "
                     "text made B worse, so the inpainting removed signal or added artefacts.")
            if low <= 0 <= high:
                line += f" The interval of the {covid} difference includes 0: the size of the effect is uncertain."
        elif split.endswith("_pp"):
            line += (" On this split the detected text was inpainted, as in B's training data: A's score here shows "
                     "how much A needed that text, and the comparison favours B by construction; it does not show "
                     "that B reads the lungs (other source cues remain).")
        else:
            line += (" Text and label are confounded with the source on this split: a model that recognises the "
                     "source scores well either way, so a change here proves little about shortcuts.")
        lines.append(line)
    if "test_decorrelated" not in set(all_rows["split"]):
        lines.append("This run has no test split where text and label are independent; a gain on a confounded "
                     "test split proves little, so read the per-source strata below.")
    if shift is not None:
        lines.append(shift.statement() + " (Section 6.)")
    lines.append(SHORTCUTS_NOT_TESTED)
    return lines


def comparison_section(run: Run, metrics: pd.DataFrame | None) -> Section:
    """Section 5 from `metrics` (compare/metrics.csv), compare/mcnemar.csv and seeds.csv, B's predictions and
    both audits (for the verdict); "not run" without the metrics or McNemar tables."""
    section = Section(5, "Classifier B vs A")
    mcnemar = run.csv("compare/mcnemar.csv")
    section.missing = [p for p, f in (("compare/metrics.csv", metrics), ("compare/mcnemar.csv", mcnemar)) if f is None]
    if section.missing:
        return section
    audits = [run.csv(f"audit/{m}.csv") for m in "ab"]
    shift = share_shift(*audits) if all(table is not None for table in audits) else None
    section.blocks.extend(Text(line, kind="verdict") for line in verdict(metrics, mcnemar, shift))
    shown = metrics.assign(cell=interval_cells(metrics))
    wide = shown.pivot_table(index=["split", "stratum_kind", "stratum", "metric"], columns="model", values="cell",
                             aggfunc="first").reindex(columns=["a", "b", "b-a"]).reset_index()
    wide = wide.rename(columns={"a": "A", "b": "B", "b-a": "B − A"}).rename_axis(columns=None)
    overall = wide["stratum_kind"] == "all"
    section.blocks.append(Table("Paired comparison on all images (95 % paired-bootstrap intervals)", wide[overall]))
    headline = wide["metric"].isin(HEADLINE_METRICS) | wide["metric"].str.startswith("recall_")
    per_stratum = wide[~overall & headline]
    section.blocks.append(Table("Per stratum (source; flagged by the audit of A)", per_stratum))
    section.blocks.append(table_block("McNemar's exact test on correctness (a_only: A right, B wrong)", mcnemar))
    seeds = run.csv("compare/seeds.csv")
    if seeds is not None:
        shown = seeds[(seeds["stratum_kind"] == "all") & (seeds["metric"].isin(HEADLINE_METRICS)
                                                          | seeds["metric"].str.startswith("recall_"))]
        section.blocks.append(table_block("Across training seeds: mean ± sd of each arm (all images)", shown))
    for split, frame in run.predictions("b").items():
        section.blocks.extend(_confusion(frame, f"B on {split}: confusion matrix"))
    return section
