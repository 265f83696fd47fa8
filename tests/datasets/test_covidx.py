"""COVIDx split files: every published line shape, validation errors with file and line, leakage, val split."""

import logging
from collections import Counter

import pytest

from datasets.covidx import (
    Record,
    check_disjoint,
    parse_line,
    patient_overlap,
    read_split,
    split_by_patient,
    write_split,
)
from datasets.errors import DatasetError, PatientLeakError, SplitFileError

# Real lines (domain.md §1) and the variants around them, with the fields they must parse to.
KNOWN_LINES = [
    (
        "3 SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg pneumonia cohen",
        Record("3", "SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg", "pneumonia", "cohen"),
    ),
    (
        "47c78742-4998-4878-aec4-37b11b1354ac 47c78742-4998-4878-aec4-37b11b1354ac.png normal",
        Record("47c78742-4998-4878-aec4-37b11b1354ac", "47c78742-4998-4878-aec4-37b11b1354ac.png", "normal"),
    ),
    (
        "419639-003251 MIDRC-RICORD-1C-419639-003251-46647-0.png COVID-19 ricord",
        Record("419639-003251", "MIDRC-RICORD-1C-419639-003251-46647-0.png", "COVID-19", "ricord"),
    ),
    ("COVID 1 COVID(1).png COVID-19 sirm", Record("COVID 1", "COVID(1).png", "COVID-19", "sirm")),
    (
        "ANON193 CR.1.2.840.113564.1722810170.20200418154808640220.1003000225002.png negative actmed",
        Record("ANON193", "CR.1.2.840.113564.1722810170.20200418154808640220.1003000225002.png", "negative", "actmed"),
    ),
    ("abc123 abc123.png pneumonia rnsa", Record("abc123", "abc123.png", "pneumonia", "rnsa")),
    ("COVID 7 COVID(7).png positive", Record("COVID 7", "COVID(7).png", "positive")),
    ("sb-1 sb-1.jpg COVID-19 stonybrook\r", Record("sb-1", "sb-1.jpg", "COVID-19", "stonybrook")),
]


@pytest.mark.parametrize(("line", "expected"), KNOWN_LINES)
def test_known_lines_parse_to_known_fields(line, expected):
    assert parse_line(line) == expected


def _write(tmp_path, text, name="split.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path, text, **kwargs):
    path = _write(tmp_path, text)
    with pytest.raises(SplitFileError) as caught:
        read_split(path, **kwargs)
    assert str(path) in str(caught.value)
    return caught.value


def test_split_file_round_trips_through_write_split(tmp_path):
    records = [expected for _, expected in KNOWN_LINES if expected.label in ("normal", "pneumonia", "COVID-19")]
    written = write_split(records, tmp_path / "out" / "train.txt")
    assert read_split(written) == records
    assert written.read_text().splitlines()[3] == "COVID 1 COVID(1).png COVID-19 sirm"


def test_blank_lines_are_skipped_and_line_numbers_still_count_them(tmp_path):
    error = _error(tmp_path, "a a.png normal\n\nb b.png normal\nc c.png Normal\n")
    assert error.line == 4 and ":4:" in str(error)
    assert "unknown label 'Normal'" in str(error) and "COVID-19" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a a.png normal\nonly-two tokens\n", 2, "malformed line"),
        ("a a.png normal cohen\nb b.png normal cohenn\n", 2, "unknown source 'cohenn'"),
        ("a a.png normal\nb a.png pneumonia\n", 2, "duplicate filename 'a.png' (first on line 1)"),
        ("a a.png normal\nb b.png positive\n", 2, "mixes binary and 3-class"),
        ("a a.png normal\nb ../b.png normal\n", 2, "escapes the image folder"),
        ("a /etc/passwd normal\n", 1, "escapes the image folder"),
        ("a C:\\x.png normal\n", 1, "escapes the image folder"),
    ],
)
def test_bad_lines_raise_errors_naming_file_line_and_problem(tmp_path, text, line, words):
    error = _error(tmp_path, text)
    assert error.line == line and words in str(error)
    assert isinstance(error, DatasetError) and isinstance(error, ValueError)


def test_empty_or_undecodable_split_files_are_rejected(tmp_path):
    assert "no records" in str(_error(tmp_path, ""))
    path = tmp_path / "latin1.txt"
    path.write_bytes("a \xe9.png normal\n".encode("latin-1"))
    with pytest.raises(SplitFileError, match="UTF-8"):
        read_split(path)


def test_image_dir_resolves_paths_and_checks_files(tmp_path):
    images = tmp_path / "train"
    images.mkdir()
    (images / "a.png").write_bytes(b"x")
    (images / "alias.png").symlink_to(images / "a.png")
    records = read_split(_write(tmp_path, "p1 a.png normal\np1 alias.png normal\n"), image_dir=images)
    assert [record.path for record in records] == [images.resolve() / "a.png", images.resolve() / "alias.png"]

    error = _error(tmp_path, "p1 a.png normal\np2 missing.png pneumonia\n", image_dir=images)
    assert error.line == 2 and "'missing.png' not found" in str(error)


def test_symlink_out_of_the_image_folder_is_rejected(tmp_path):
    images = tmp_path / "train"
    images.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (images / "link.png").symlink_to(tmp_path / "secret.png")
    error = _error(tmp_path, "p link.png normal\n", image_dir=images)
    assert error.line == 1 and "outside the image folder" in str(error)
    (images / "inside.png").write_bytes(b"x")
    (images / "sub").symlink_to(tmp_path)  # a linked folder on the way out
    error = _error(tmp_path, "p inside.png normal\nq sub/secret.png normal\n", image_dir=images)
    assert error.line == 2 and "'sub/secret.png' resolves outside the image folder" in str(error)


def test_write_split_refuses_records_that_would_not_read_back(tmp_path):
    with pytest.raises(SplitFileError, match="would not read back"):
        write_split([Record("p", "a b.png", "normal")], tmp_path / "x.txt")
    with pytest.raises(SplitFileError, match="unknown label"):
        write_split([Record("p", "a.png", "covid")], tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


def test_patient_overlap_is_reported_and_refused_unless_allowed(caplog):
    train = [Record("p1", "a.png", "normal"), Record("p2", "b.png", "COVID-19")]
    test = [Record("p2", "c.png", "COVID-19"), Record("p3", "d.png", "normal")]
    assert patient_overlap(train, test) == {"p2"}
    with pytest.raises(PatientLeakError, match=r"test\.txt: 1 patient"):
        check_disjoint(train, test, test_path="test.txt")
    with caplog.at_level(logging.WARNING):
        assert check_disjoint(train, test, test_path="test.txt", allow=True) == {"p2"}
    assert "allowed" in caplog.text
    assert check_disjoint(train, test[1:]) == set()


def _cohort():
    """40 normal, 20 pneumonia, 10 COVID-19 patients; two images each."""
    records = []
    for label, count in (("normal", 40), ("pneumonia", 20), ("COVID-19", 10)):
        for index in range(count):
            patient = f"{label}-{index}"
            records += [Record(patient, f"{patient}-{view}.png", label) for view in (0, 1)]
    return records


def test_validation_split_is_by_patient_stratified_and_deterministic():
    records = _cohort()
    train, validation = split_by_patient(records, fraction=0.2, seed=7)
    assert sorted(train + validation, key=records.index) == records
    assert not patient_overlap(train, validation)
    per_label = Counter(label for _, label in {(r.patient_id, r.label) for r in validation})
    assert per_label == {"normal": 8, "pneumonia": 4, "COVID-19": 2}
    assert split_by_patient(records, fraction=0.2, seed=7) == (train, validation)
    assert split_by_patient(records, fraction=0.2, seed=8)[1] != validation


def test_small_strata_keep_one_patient_on_each_side():
    records = [Record("a", "a.png", "COVID-19"), Record("b", "b.png", "COVID-19"), Record("c", "c.png", "normal")]
    train, validation = split_by_patient(records, fraction=0.1, seed=0)
    assert [r.label for r in validation] == ["COVID-19"] and len(train) == 2
    with pytest.raises(ValueError, match="fraction"):
        split_by_patient(records, fraction=1.0)
