"""The report's section "Did cleaning remove the shortcut?", from probes/ (the opt-in probes stage,
docs/probes.md); absent when the run has no probes/status.json (the stage is off: `probes: {enabled: true}`).

`source_verdict` reads probes/source.csv by docs/probes.md's rules, `leakage_verdict` probes/leakage.csv;
`shortcut_verdict` joins them for summary.json's "shortcut_removed" (flows/summary.py). A verdict needs an
interval: with fewer than MIN_FILMS test films of a source, or no interval, it says it cannot say.
"""

from __future__ import annotations

import math

import pandas as pd

from reports.blocks import Run, Section, Table, Text, number, split_key, with_ci

TITLE = "Did cleaning remove the shortcut?"
MIN_FILMS = 10  # pipeline.compare.MIN_INTERVAL_N: fewer films give no interval (reports do not import pipeline)
CHANCE = 0.5
VIEWS = ("whole", "text_only", "lungs_masked", "cleaned")
GROUPS = ("cleaned films (COVIDx++ copies whose detected text was inpainted) with never-texted films (films in which "
          "text detection found no box; on synthetic data too: the generator's text-free copies are not used)")


def _cell(row: pd.Series) -> str:
    """"auc [low, high] (n=N)" of one AUC row (probes' AUC_COLUMNS)."""
    return with_ci(row["auc"], row["ci_low"], row["ci_high"], row["n"])


def _above_chance(row: pd.Series) -> bool | None:
    """True: the interval lies above 0.5; False: it reaches 0.5 or below; None: no interval."""
    if math.isnan(row["ci_low"]) or math.isnan(row["ci_high"]):
        return None
    return bool(row["ci_low"] > CHANCE)


def source_verdict(source: pd.DataFrame) -> str:
    """Did the source cue survive cleaning? One sentence from source.csv: the `cleaned` view's mean AUC
    against chance and against the `whole` view; "cannot say" with fewer than MIN_FILMS test films of a
    source, without intervals, or when even the original films do not show the source."""
    overall = source[source["stratum"] == "all"].set_index("view")
    if not {"whole", "cleaned"} <= set(overall.index):
        return "Cannot say: the original and cleaned films were not both probed."
    counts = source[(source["stratum"] != "all") & (source["view"] == "whole")].set_index("stratum")["positives"]
    small = counts[counts < MIN_FILMS]
    if len(small):
        listed = ", ".join(f"{name}: {int(n)}" for name, n in small.items())
        return f"Cannot say: fewer than {MIN_FILMS} test films per source ({listed})."
    whole, cleaned = overall.loc["whole"], overall.loc["cleaned"]
    if _above_chance(whole) is None or _above_chance(cleaned) is None:
        return "Cannot say: the AUCs have no interval (probes.n_resamples is 0)."
    compared = f"AUC {_cell(cleaned)} vs {number(whole['auc'])} on the original films"
    if not _above_chance(whole):
        return (f"Cannot say: the probe does not recognise the source even on the original films (AUC "
                f"{_cell(whole)}), so it cannot show what cleaning removed.")
    if not _above_chance(cleaned):
        return (f"The source is no longer recognisable after cleaning ({compared}; chance 0.5): cleaning removed "
                "the source cue this probe can find.")
    if cleaned["ci_high"] < whole["auc"]:
        return (f"The source is still recognisable after cleaning, less than on the original films ({compared}): "
                "cleaning weakened the source cue but did not remove it.")
    return f"The source is still recognisable after cleaning ({compared}): cleaning did not remove the source cue."


def leakage_verdict(leakage: pd.DataFrame) -> str | None:
    """Does COVIDx++ carry a mark of cleaning? One sentence from leakage.csv, None when no variant has an
    interval (too few films, or the probe was not run)."""
    rows = [row for _, row in leakage.iterrows() if _above_chance(row) is not None]
    if not rows:
        return None
    marked = [row for row in rows if _above_chance(row)]
    if marked:
        found = "; ".join(f"{row['variant']}: AUC {_cell(row)}" for row in marked)
        return (f"A cleaned film can be told from a never-texted one ({found}): COVIDx++ carries a mark of "
                "cleaning, a new shortcut where it follows the label.")
    found = "; ".join(f"{row['variant']}: AUC {_cell(row)}" for row in rows)
    return f"A cleaned film cannot be told from a never-texted one ({found})."


def shortcut_verdict(source: pd.DataFrame | None, leakage: pd.DataFrame | None) -> str | None:
    """summary.json's "shortcut_removed": the source verdict, then the leakage one when it has one; None when
    the source probes did not run (an empty source.csv)."""
    if source is None or source.empty:
        return None
    lines = [source_verdict(source)]
    if leakage is not None and (line := leakage_verdict(leakage)) is not None:
        lines.append(line)
    return " ".join(lines)


def _hints(source: pd.DataFrame) -> list[str]:
    """What the text-only and lungs-masked views add (only where their interval lies above chance)."""
    overall = source[source["stratum"] == "all"].set_index("view")
    hints = []
    if "text_only" in overall.index and _above_chance(overall.loc["text_only"]):
        hints.append(f"The detected text alone names the source (text only: AUC {_cell(overall.loc['text_only'])}).")
    if "lungs_masked" in overall.index and _above_chance(overall.loc["lungs_masked"]):
        hints.append(f"With the lung fields masked the source is still recognisable (AUC "
                     f"{_cell(overall.loc['lungs_masked'])}): the cue lies outside the lungs (burned-in text, "
                     "markers, borders, corners, collimation); the cleaned column (the COVIDx++ copies) shows how "
                     "much of it cleaning removed.")
    return hints


def _source_table(source: pd.DataFrame) -> pd.DataFrame:
    """stratum × view cells "auc [low, high] (n=N)": the mean over sources ("all") first, then each source."""
    cells = source.assign(cell=[_cell(row) for _, row in source.iterrows()])
    table = cells.pivot(index="stratum", columns="view", values="cell")
    order = ["all", *sorted(name for name in table.index if name != "all")]
    columns = [view for view in VIEWS if view in table.columns]
    return table.reindex(index=order, columns=columns).reset_index().rename(
        columns={"stratum": "source"}).rename_axis(columns=None)


def _leakage_tables(leakage: pd.DataFrame, correlation: pd.DataFrame) -> list[Table | Text]:
    """The AUC table, then the label correlations of the variants whose AUC has an interval (a probe with too few
    never-texted films finds nothing whose link to the label could be read)."""
    auc = pd.DataFrame({"variant": leakage["variant"], "cleaned (test pictures)": leakage["positives"].map(number),
                        "never-texted (test pictures)": leakage["negatives"].map(number),
                        "AUC of cleaned [95 %] (n)": [_cell(row) for _, row in leakage.iterrows()]})
    blocks: list[Table | Text] = [Table("Cleaning leakage: can a probe tell a cleaned film from a never-texted one? "
                                        "(test split; a picture is a whole film, or a patch around one box; 0.5 is "
                                        "chance)", auc)]
    readable = {row["variant"] for _, row in leakage.iterrows() if _above_chance(row) is not None}
    correlation = correlation[correlation["variant"].isin(readable)]
    if correlation.empty:
        blocks.append(Text("Whether a leak follows the label is not shown: no leakage AUC has an interval."))
        return blocks
    follows = pd.DataFrame({
        "variant": correlation["variant"], "label": correlation["label"], "films": correlation["films"].map(number),
        "cleaned share": correlation["cleaned_share"].map(number),
        "correlation of score and label [95 %] (n)": [
            with_ci(row["correlation"], row["ci_low"], row["ci_high"], row["n"]) for _, row in correlation.iterrows()]})
    return [*blocks, Table("Does the leak follow the label? Per label: its share of cleaned films and the correlation "
                           "of the probe's score with it", follows)]


def _label_table(from_source: pd.DataFrame, metrics: pd.DataFrame | None) -> pd.DataFrame:
    """Per split: the accuracy of the source alone (fitted on train; fitted on the split itself, the ceiling),
    the majority rate, and A's and B's accuracy (compare/metrics.csv)."""
    def value(rows: pd.DataFrame) -> str:
        if rows.empty:
            return ""
        row = rows.iloc[0]
        return with_ci(row["value"], row["ci_low"], row["ci_high"], row["n"])

    rows = []
    for split in sorted(set(from_source["split"]), key=lambda name: (name != "train", split_key(name))):
        mine = from_source[from_source["split"] == split]

        def pick(fitted_on: str, metric: str, rows: pd.DataFrame = mine) -> pd.DataFrame:
            return rows[(rows["fitted_on"] == fitted_on) & (rows["metric"] == metric)]

        trained = pick("train", "accuracy")
        own = pick("self", "accuracy")  # none for the training split: there both fits are the same
        accuracy = {m: value(metrics[(metrics["split"] == split) & (metrics["model"] == m)
                                     & (metrics["stratum_kind"] == "all") & (metrics["metric"] == "accuracy")])
                    if metrics is not None else "" for m in ("a", "b")}
        rows.append({"split": split, "source alone (fitted on train)": value(trained),
                     "source alone (fitted on the split: ceiling)": value(own if len(own) else trained),
                     "majority class": value(pick("train", "majority_rate")), "A": accuracy["a"],
                     "B": accuracy["b"]})
    return pd.DataFrame(rows)


def probes_section(run: Run, metrics: pd.DataFrame | None) -> Section | None:
    """The section from probes/ (None without probes/status.json), numbered by reports.render; `metrics`:
    compare/metrics.csv, for A's and B's accuracy next to the label-from-source ceiling."""
    status = run.json("probes/status.json")
    if status is None:
        return None
    section = Section(0, TITLE)
    skipped = status.get("skipped", {})
    source, leakage = run.csv("probes/source.csv"), run.csv("probes/leakage.csv")
    correlation, from_source = run.csv("probes/leakage_correlation.csv"), run.csv("probes/label_from_source.csv")
    films, generator = status.get("films", {}), status.get("generator_lung_masks", 0)
    section.blocks.append(Text(
        f"Small CNN probes trained on {films.get('train', 0)} training films and scored on {films.get('test', 0)} "
        f"films of the audited split {status.get('audit_split', '')} (docs/probes.md); lung fields: "
        + (f"the generator's masks ({generator} films)." if generator else "estimated from each film.")
        + "".join(f" Left out: {n} film(s), {reason}." for reason, n in status.get("left_out", {}).items())))
    if source is not None and not source.empty:
        section.blocks.append(Text(source_verdict(source), kind="verdict"))
        section.blocks.extend(Text(line) for line in _hints(source))
        section.blocks.append(Table("Source probes: one-vs-rest AUC of the source per view, the mean over sources "
                                    "(all) and per source, 95 % patient-bootstrap interval, n (0.5 is chance)",
                                    _source_table(source)))
    for name, what in (("source", "Source probes"), ("leakage", "Cleaning-leakage probe"),
                       ("label_from_source", "Label from source")):
        if name in skipped:
            section.blocks.append(Text(f"{what}: not run: {skipped[name]}."))
    if leakage is not None and not leakage.empty and correlation is not None:
        if (line := leakage_verdict(leakage)) is not None:
            section.blocks.append(Text(line, kind="verdict"))
        section.blocks.append(Text(f"The leakage probe compares {GROUPS}; a patient with films of both kinds is "
                                   "left out."))
        section.blocks.extend(_leakage_tables(leakage, correlation))
    if from_source is not None and not from_source.empty:
        section.blocks.append(Table("Label from source: accuracy of each film's source's majority label, next to "
                                    "the classifiers' accuracy (95 % interval, n)", _label_table(from_source, metrics)))
    return section
