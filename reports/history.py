"""The report's sections on a run's history: what changed since the last run into the folder (changes.json)
and what reviewers decided about the flagged films (review/decisions.csv), with one summary line each."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from reports.blocks import Run, Section, Text, number, table_block
from reports.review import (
    DECISIONS,
    DOES_NOT,
    RELIES,
    UNSURE,
    DecisionsError,
    Rate,
    Review,
    current_decisions,
    flag_precision_against_review,
)

CHANGES_TITLE = "Since the last run"
REVIEW_TITLE = "Reviewers' decisions"


def since_line(since: Mapping) -> str:
    """One sentence of changes.json: what changed since the last completed run into this folder."""
    images, flags = since["images"], since["flags"]
    return (f"Since the last run (finished {since['previous_finished_at']} UTC): {images['added']} image(s) added, "
            f"{images['removed']} removed, {images['changed']} changed, {images['unreadable']} listed but unreadable, "
            f"{images['unchanged']} unchanged; "
            f"{flags['new']} film(s) newly flagged as text-reliant, {flags['gone']} no longer flagged "
            f"(of {flags['audited_both_times']} audited both times).")


def changes_section(run: Run) -> Section | None:
    """What changed since the last completed run into this folder (changes.json); None on a first run."""
    since = run.json("changes.json")
    if since is None:
        return None
    section = Section(0, CHANGES_TITLE)
    section.blocks.append(Text(since_line(since)))
    per_split = pd.DataFrame.from_dict(since["images"]["per_split"], orient="index").rename_axis("split")
    section.blocks.append(table_block("Images per split: added, removed, changed (sha256 of the file), unreadable",
                                      per_split.reset_index()))
    listed = [(kind, name) for kind, names in since["images"]["listed"].items() for name in names]
    listed += [(f"flag {kind}", name) for kind in ("new", "gone") for name in since["flags"][f"listed_{kind}"]]
    if listed:
        section.blocks.append(table_block("The films concerned (up to 20 of each kind)",
                                          pd.DataFrame(listed, columns=["change", "film"])))
    by_source = pd.DataFrame(since["by_source"])
    if len(by_source):
        section.blocks.append(table_block("Audit of A per source, last run and this run (n: audited images)",
                                          by_source))
    return section


def rate_cell(rate: Rate) -> str:
    """"k/n = value [low, high]"; without an interval below MIN_INTERVAL_N decided films, and says so."""
    if rate.value is None:
        return "no decided film"
    shown = f"{rate.k}/{rate.n} = {number(rate.value)}"
    if rate.ci_low is None:
        return f"{shown} (n={rate.n}: too few films for an interval)"
    return f"{shown} [{number(rate.ci_low)}, {number(rate.ci_high)}]"


def _review(run: Run) -> Review | str | None:
    """The run's decisions judged against the films now; the error message of an unusable decisions file; None
    when nobody has reviewed this run."""
    if not (run.root / DECISIONS).is_file():
        return None
    try:
        return current_decisions(run.root)
    except DecisionsError as error:
        return f"The reviewers' decisions could not be read: {error}"


def review_line(run: Run) -> str | None:
    """One sentence for the summary: how many films reviewers decided and the flags' precision against them."""
    review = _review(run)
    return _decided(run, review) if isinstance(review, Review) else review


def _decided(run: Run, review: Review) -> str:
    decided = review.current["decision"].value_counts()
    line = (f"Reviewers decided {len(review.current)} film(s): {decided.get(RELIES, 0)} rely on text, "
            f"{decided.get(DOES_NOT, 0)} do not, {decided.get(UNSURE, 0)} unsure")
    audit = run.csv("audit/a.csv")
    if audit is not None:
        precision = flag_precision_against_review(audit, review.current).precision
        line += f"; precision of A's flags against them {rate_cell(precision)}"
    return line + "."


def review_section(run: Run) -> Section | None:
    """The reviewers' decisions (review/decisions.csv, made with `cxr-audit review`) on films as they are now,
    A's flags against them, and the decisions that no longer count; None when nobody has reviewed this run.
    Reviewers' free-text notes are not shown (they may name a patient)."""
    review = _review(run)
    if review is None:
        return None
    section = Section(0, REVIEW_TITLE)
    if isinstance(review, str):
        section.blocks.append(Text(review))
        return section
    section.blocks.append(Text(_decided(run, review)))
    audit = run.csv("audit/a.csv")
    if audit is not None:
        check = flag_precision_against_review(audit, review.current)
        rates = pd.DataFrame([
            ("precision: flagged films decided 'relies on text', of flagged films decided", rate_cell(check.precision)),
            ("recall: flagged films, of films decided 'relies on text' (optimistic: the review shows flagged films "
             "first)", rate_cell(check.recall))], columns=["measure", "value"])
        section.blocks.append(table_block(f"A's flags against the decisions ({check.reviewed} audited films decided, "
                                          f"{check.unsure} unsure and left out; 95 % Wilson intervals)", rates))
        flagged = audit.assign(filename=audit["filename"].astype(str)).set_index("filename")["flagged"].astype(bool)
        decided = review.current.assign(flagged=review.current["filename"].map(flagged))
    else:
        decided = review.current.assign(flagged=None)
    section.blocks.append(table_block("Decided films", decided[["filename", "split", "decision", "flagged", "reviewer",
                                                               "decided_at", "carried_from"]]))
    if len(review.stale):
        section.blocks.append(table_block("Decisions that no longer count (review these films again)",
                                          review.stale[["filename", "split", "why", "decision", "decided_at"]]))
    return section
