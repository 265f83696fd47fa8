"""reports.history in the rendered report: the reviewers' decisions with the flags' precision against them, the
decisions that no longer count, an unreadable decisions file, and the summary's lines."""

from __future__ import annotations

import html as html_lib
from pathlib import Path

import pytest

import reports
from reports.history import rate_cell
from reports.review import DOES_NOT, RELIES, UNSURE, rate
from tests.reports.review_run import PATIENT, change, decision, write, write_review_run

NOTE = "PLANTED-NOTE-name-of-a-patient"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_review_run(tmp_path / "run")


def test_the_report_shows_the_decisions_and_the_flags_precision_against_them(run):
    # Films 0-2 are flagged: two decided "relies on text", one "does not"; film 3 (not flagged) relies; 4 unsure.
    write(run, [decision(run, 0, RELIES, note=NOTE), decision(run, 1, RELIES), decision(run, 2, DOES_NOT),
                decision(run, 3, RELIES), decision(run, 4, UNSURE), decision(run, 5, RELIES)])
    change(run, 5)  # edited after its review: the decision no longer counts
    html = html_lib.unescape(reports.render(run).read_text(encoding="utf-8"))
    line = "Reviewers decided 5 film(s): 3 rely on text, 1 do not, 1 unsure"
    assert html.count(line) == 2  # the summary and the section
    assert "precision of A's flags against them 2/3 = 0.667 (n=3: too few films for an interval)" in html
    assert "<td>2/3 = 0.667 (n=3: too few films for an interval)</td>" in html  # recall: 2 of the 3 decided "relies"
    assert "5 audited films decided, 1 unsure and left out" in html
    assert "Decisions that no longer count" in html and "stale: the film changed since it was reviewed" in html
    assert "<h2>7. Reviewers' decisions</h2>" in html  # after the six detail sections; no changes.json here
    assert NOTE not in html and PATIENT not in html
    assert NOTE not in (run / "summary.md").read_text(encoding="utf-8")


def test_a_rate_shows_k_of_n_and_an_interval_only_from_ten_films():
    assert rate_cell(rate(0, 0)) == "no decided film"
    assert rate_cell(rate(2, 9)) == "2/9 = 0.222 (n=9: too few films for an interval)"
    assert rate_cell(rate(8, 10)) == "8/10 = 0.800 [0.490, 0.943]"  # Wilson, 95 %


def test_an_unreadable_decisions_file_is_named_with_its_line_and_the_report_still_renders(run):
    path = write(run, [decision(run, 0)])
    path.write_text(path.read_text(encoding="utf-8").replace(RELIES, "maybe"), encoding="utf-8")
    html = reports.render(run).read_text(encoding="utf-8")
    assert f"The reviewers&#39; decisions could not be read: {path}:2: decision &#39;maybe&#39;" in html


def test_no_decisions_file_no_section(run):
    html = reports.render(run).read_text(encoding="utf-8")
    assert "Reviewers" not in html
