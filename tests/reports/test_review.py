"""reports.review: reading decisions, staleness by sha256, carry-over, review order and the flags' precision."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from datasets.atomic import file_sha256
from reports import review
from reports.review import (
    CHANGED,
    COLUMNS,
    DECISIONS,
    GONE,
    DecisionsError,
    carried_decisions,
    current_decisions,
    flag_precision_against_review,
    read_decisions,
    review_order,
)
from tests.reports.review_run import SHA, change, decision, write, write_review_run

HEADER = ",".join(COLUMNS) + "\n"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_review_run(tmp_path / "run")


# ---------------------------------------------------------------- reading


def test_no_file_reads_as_no_decisions(tmp_path):
    table = read_decisions(tmp_path / "absent.csv")
    assert table.empty and tuple(table.columns) == COLUMNS


def test_rows_read_back_in_file_order_with_blank_optionals(run):
    rows = [decision(run, 0, note="L marker, \"PORTABLE\"\nsecond line"), decision(run, 1, review.UNSURE)]
    rows[1]["reviewer"] = rows[1]["carried_from"] = ""
    table = read_decisions(write(run, rows))
    assert table.to_dict("records") == rows


@pytest.mark.parametrize(("row", "column", "value", "message"), [
    (0, "decision", "maybe", "decision 'maybe' is not one of 'relies on text', 'does not', 'unsure'"),
    (2, "decision", "maybe", "decision 'maybe'"),
    (0, "image_sha256", "XYZ", "image_sha256 'XYZ' is not a sha256"),
    (0, "decided_at", "2026-12-05T10:00:00", "is not an ISO time with a UTC offset"),
    (0, "decided_at", "yesterday", "decided_at 'yesterday'"),
    (2, "filename", "", "no filename"),
])
def test_a_bad_row_is_refused_naming_the_file_and_its_line(tmp_path, row, column, value, message):
    rows = [decision(tmp_path, i, sha=SHA, note="two\nlines" if i == 1 else "") for i in range(3)]
    rows[row][column] = value
    path = write(tmp_path, rows)
    line = {0: 2, 2: 5}[row]  # the note of the second row spans lines 3 and 4
    with pytest.raises(DecisionsError) as error:
        read_decisions(path)
    assert str(error.value).startswith(f"{path}:{line}: ") and message in str(error.value), str(error.value)


def test_a_row_longer_than_the_header_is_refused(tmp_path):
    path = write(tmp_path, [decision(tmp_path, 0, sha=SHA)])
    path.write_text(path.read_text().rstrip("\n") + ",extra\n")
    with pytest.raises(DecisionsError, match=r"decisions.csv:2: more fields than the header"):
        read_decisions(path)


def test_a_missing_column_is_refused_on_line_1(tmp_path):
    path = tmp_path / "decisions.csv"
    path.write_text("filename,split,decision\nfilm_0.png,test,unsure\n")
    with pytest.raises(DecisionsError, match=r"decisions.csv:1: missing column\(s\) source, image_sha256, "
                                             "decided_at"):
        read_decisions(path)


def test_a_file_that_is_not_utf8_text_is_refused(tmp_path):
    path = tmp_path / "decisions.csv"
    path.write_bytes(HEADER.encode() + b"\xff\xfe\x00binary\n")
    with pytest.raises(DecisionsError, match="not a UTF-8 CSV"):
        read_decisions(path)


# ---------------------------------------------------------------- staleness and carry-over


def test_a_decision_counts_only_while_its_film_is_unchanged(run):
    """Decisions made in this folder by an earlier run: film 1 was edited since and film 2 removed, so they
    are stale (to review again); film 3's later decision wins; film 4 was reviewed again after its change."""
    old_4 = file_sha256(run / "data" / "test" / "film_4.png")
    change(run, 4)
    write(run, [decision(run, 0), decision(run, 1), decision(run, 2, review.DOES_NOT), decision(run, 3),
                decision(run, 3, review.UNSURE, note="changed my mind"),
                decision(run, 4, sha=old_4), decision(run, 4, review.DOES_NOT)])
    change(run, 1)
    (run / "data" / "test" / "film_2.png").unlink()
    found = current_decisions(run)
    current = found.current.set_index("filename")
    assert list(current.index) == ["film_0.png", "film_3.png", "film_4.png"]
    assert current.loc["film_3.png", "decision"] == review.UNSURE and current.loc["film_3.png", "note"]
    assert current.loc["film_4.png", "decision"] == review.DOES_NOT
    stale = found.stale.set_index("filename")
    assert dict(stale["why"]) == {"film_1.png": CHANGED, "film_2.png": GONE}
    assert stale.loc["film_2.png", "decision"] == review.DOES_NOT


def test_a_changed_film_reverted_to_its_reviewed_bytes_counts_again(run):
    write(run, [decision(run, 0)])
    original = (run / "data" / "test" / "film_0.png").read_bytes()
    change(run, 0)
    assert current_decisions(run).current.empty
    (run / "data" / "test" / "film_0.png").write_bytes(original)
    assert list(current_decisions(run).current["filename"]) == ["film_0.png"]


def test_carry_over_takes_unchanged_films_and_marks_changed_ones_for_review(tmp_path):
    earlier = write_review_run(tmp_path / "earlier")
    later = write_review_run(tmp_path / "later")  # the same dataset again: the same bytes
    write(earlier, [decision(earlier, 0), decision(earlier, 1), decision(earlier, 2), decision(earlier, 3)])
    change(later, 1)
    write(later, [decision(later, 2, review.DOES_NOT)])  # decided in the later run already: kept as it is
    carried = carried_decisions(later, earlier)
    assert list(carried["filename"]) == ["film_0.png", "film_3.png", "film_1.png"]
    assert set(carried["carried_from"]) == {str(earlier)}
    write(later, [decision(later, 2, review.DOES_NOT), *carried.to_dict("records")])
    found = current_decisions(later)
    assert dict(zip(found.current["filename"], found.current["decision"], strict=True)) == {
        "film_2.png": review.DOES_NOT, "film_0.png": review.RELIES, "film_3.png": review.RELIES}
    assert dict(zip(found.stale["filename"], found.stale["why"], strict=True)) == {"film_1.png": CHANGED}
    assert carried_decisions(later, earlier).empty  # carrying again adds nothing


def test_carry_over_from_a_run_without_decisions_is_empty(tmp_path):
    earlier = write_review_run(tmp_path / "earlier")
    later = write_review_run(tmp_path / "later")
    assert carried_decisions(later, earlier).empty


def test_carry_over_between_moved_dataset_roots_matches_the_films_by_relative_path(tmp_path):
    """Each synthetic run has its own data/; a carried decision is judged on the later run's film."""
    earlier = write_review_run(tmp_path / "earlier")
    write(earlier, [decision(earlier, 0)])
    later = tmp_path / "later"
    shutil.copytree(earlier, later)
    shutil.rmtree(earlier / "data")  # the earlier run's films are gone: the later run's are the ones that count
    (later / DECISIONS).unlink()
    assert list(carried_decisions(later, earlier)["filename"]) == ["film_0.png"]


# ---------------------------------------------------------------- order and the flags' precision


def test_review_order_is_flagged_first_then_share_then_drop_then_name():
    audit = pd.DataFrame({"filename": ["e", "d", "c", "b", "a"], "flagged": [False, True, False, True, False],
                          "text_share": [0.9, 0.1, 0.5, 0.2, 0.5], "cf_probability_drop": [0.0, 0.3, 0.1, None, 0.4]})
    assert list(review_order(audit)["filename"]) == ["b", "d", "e", "a", "c"]


def _audit(flagged: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"filename": [f"f{i}" for i in range(len(flagged))], "flagged": flagged})


def _decisions(choices: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame({"filename": [f"f{i}" for i in choices], "decision": list(choices.values())})


def test_precision_and_recall_of_the_flags_on_a_small_table():
    audit = _audit([True] * 6 + [False] * 4)
    decisions = _decisions({0: review.RELIES, 1: review.RELIES, 2: review.DOES_NOT, 3: review.UNSURE,
                            6: review.RELIES, 7: review.DOES_NOT, 42: review.RELIES})  # f42: not audited
    check = flag_precision_against_review(audit, decisions)
    assert (check.reviewed, check.unsure) == (6, 1)
    assert (check.precision.k, check.precision.n, check.precision.value) == (2, 3, pytest.approx(2 / 3))
    assert (check.recall.k, check.recall.n, check.recall.value) == (2, 3, pytest.approx(2 / 3))
    assert check.precision.ci_low is None and check.recall.ci_high is None  # n < 10: no interval


def test_no_decided_flagged_film_gives_no_precision():
    check = flag_precision_against_review(_audit([True, False]), _decisions({0: review.UNSURE, 1: review.DOES_NOT}))
    assert check.precision == review.Rate(0, 0, None, None, None)
    assert check.recall == review.Rate(0, 0, None, None, None)
    empty = flag_precision_against_review(_audit([True]), _decisions({}))
    assert (empty.reviewed, empty.precision.value) == (0, None)


def test_the_later_decision_of_a_film_counts():
    decisions = _decisions({0: review.RELIES})
    decisions = pd.concat([decisions, _decisions({0: review.DOES_NOT})])
    assert flag_precision_against_review(_audit([True]), decisions).precision.k == 0


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n", "interval"), [(6, 9, False), (7, 10, True), (9, 12, True)])
def test_an_interval_from_ten_decided_flagged_films_on(k, n, interval):
    check = flag_precision_against_review(
        _audit([True] * n), _decisions({i: review.RELIES if i < k else review.DOES_NOT for i in range(n)}))
    assert check.precision.value == pytest.approx(k / n)
    if interval:
        assert (check.precision.ci_low, check.precision.ci_high) == pytest.approx(wilson(k, n))
    else:
        assert check.precision.ci_low is None and check.precision.ci_high is None


def test_the_interval_threshold_is_the_comparisons():
    from pipeline.compare import MIN_INTERVAL_N

    assert review.MIN_INTERVAL_N == MIN_INTERVAL_N
