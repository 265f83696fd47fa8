"""Section 0 of the report, the "Summary" on its first screen: does A rely on the text, for which classes and
sources, how sure, what cleaning changed (the verdict of `reports.classifier_sections`), the most text-reliant
films, and one line each on the run's history."""

from __future__ import annotations

import pandas as pd

from reports import history
from reports.blocks import Run, Section, Text, source_of, table_block
from reports.classifier_sections import verdict
from reports.saliency_shift import share_shift


def _reliance(audit: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per class or source of the audited images: how many, how many with detected text (a counterfactual
    was run), in how many of those the prediction changed when the text alone was inpainted, and the mean
    text share against its chance level (the mean text area)."""
    table = audit.assign(group=audit[by].fillna("").astype(str).replace("", "(none)"),
                         tried=audit["counterfactual"].astype(bool),
                         changed=audit["cf_prediction_changed"].eq(True))
    grouped = table.groupby("group", sort=True).agg(images=("filename", "size"), with_text=("tried", "sum"),
                                                    prediction_changed=("changed", "sum"),
                                                    mean_text_share=("text_share", "mean"),
                                                    chance_level=("text_area", "mean")).reset_index()
    grouped["changed_rate"] = [_rate(k, n) for k, n in zip(grouped["prediction_changed"], grouped["with_text"],
                                                            strict=True)]
    return grouped.rename(columns={"group": by})[[by, "images", "with_text", "prediction_changed", "changed_rate",
                                                  "mean_text_share", "chance_level"]]


def _rate(k: int, n: int) -> str:
    """"k/n (rate)"; marked when n is below 10 (too few for the rate to mean much), "no images" for n = 0."""
    if n == 0:
        return "no images"
    return f"{k}/{n} ({k / n:.0%})" + (" (n < 10)" if n < 10 else "")


def _most_reliant(audit: pd.DataFrame, count: int = 6) -> pd.DataFrame:
    """The `count` films whose prediction rests most on the text: the largest drop of the target probability
    when the text alone was inpainted, then the highest text share."""
    ranked = audit.assign(drop=pd.to_numeric(audit["cf_probability_drop"], errors="coerce").fillna(-1.0))
    ranked = ranked.sort_values(["drop", "text_share", "filename"], ascending=[False, False, True]).head(count)
    return pd.DataFrame({"film": ranked["filename"], "class": ranked["label"], "source": source_of(ranked),
                         "prediction": ranked["predicted"], "after text removed": ranked["cf_predicted"].fillna("–"),
                         "probability drop": ranked["cf_probability_drop"], "text share": ranked["text_share"]})


def summary_section(run: Run, metrics: pd.DataFrame | None) -> Section:
    """The first screen: does A rely on the text, for which classes and sources, how sure, what cleaning
    changed (the verdict), and the most text-reliant films; the sections below hold the detail."""
    section = Section(0, "Summary")
    audit = run.csv("audit/a.csv")
    if audit is None:
        section.missing.append("audit/a.csv")
        return section
    tried = audit["counterfactual"].astype(bool)
    changed = int(audit["cf_prediction_changed"].eq(True).sum())
    if not tried.any():
        answer = (f"No burned-in text was detected in the {len(audit)} audited images, so reliance on it could not "
                  "be tested.")
    else:
        answer = (f"Does classifier A rely on burned-in text? Its prediction changed when only the detected text "
                  f"was inpainted in {_rate(changed, int(tried.sum()))} of the audited images with text "
                  f"({len(audit)} audited).")
    section.blocks.append(Text(answer, kind="verdict"))
    section.blocks.append(table_block("Reliance on text per class (audit of A)", _reliance(audit, "label")))
    mcnemar = run.csv("compare/mcnemar.csv")
    audit_b = run.csv("audit/b.csv")
    shift = share_shift(audit, audit_b) if audit_b is not None else None
    if metrics is not None and mcnemar is not None:
        section.blocks.extend(Text(line, kind="verdict") for line in verdict(metrics, mcnemar, shift)[:-1])
    section.blocks.append(table_block("Reliance on text per source (audit of A)", _reliance(audit, "source")))
    drops = pd.to_numeric(audit["cf_probability_drop"], errors="coerce")
    if (drops > 0).any():
        section.blocks.append(table_block("The most text-reliant films (largest drop of A's probability when the text "
                                          "alone was inpainted)", _most_reliant(audit[drops > 0])))
    else:
        section.blocks.append(Text("No film's predicted probability dropped when its text alone was inpainted, so no "
                                   "film is listed as text-reliant."))
    if (since := run.json("changes.json")) is not None:
        section.blocks.append(Text(f"{history.since_line(since)} (Section “{history.CHANGES_TITLE}”.)"))
    if (reviewed := history.review_line(run)) is not None:
        section.blocks.append(Text(f"{reviewed} (Section “{history.REVIEW_TITLE}”.)"))
    return section
