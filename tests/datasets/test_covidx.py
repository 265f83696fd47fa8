"""COVIDx split files: every published line shape, validation errors with file and line, leakage, val split."""

import logging
from collections import Counter

import pytest

from datasets.covidx import (
    FilenameConflict,
    Record,
    RepeatedLine,
    check_disjoint,
    parse_line,
    patient_overlap,
    read_split,
    read_split_checked,
    split_by_patient,
    write_split,
)
from datasets.errors import DatasetError, PatientLeakError, SplitFileError

# Real lines of published COVIDx split files and the variants around them, with the fields they must parse to.
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
        ("a a.png normal\nb b.png positive\n", 2, "mixes binary and 3-class"),
        ("a a.png normal\na a.png positive\n", 2, "mixes binary and 3-class"),  # not a duplicate conflict
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
    with pytest.raises(SplitFileError, match="would not read back") as caught:
        write_split([Record("p", f"a {LONG}.png", "normal")], tmp_path / "x.txt")
    assert len(str(caught.value)) < 500
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


def test_mixed_label_schemes_name_the_line_of_the_first_record(tmp_path):
    error = _error(tmp_path, "\n\na a.png normal\nb b.png positive\n")
    assert error.line == 4 and "(line 3 has 'normal')" in str(error)


# v1's train_COVIDx.txt lists ~3,000 RSNA images twice on identical lines.
def test_identical_repeated_lines_are_read_once_and_counted(tmp_path):
    text = "p1 a.png normal rsna\np2 b.png pneumonia rsna\np1 a.png normal rsna\np1  a.png normal rsna\r\n"
    path = _write(tmp_path, text)
    expected = [Record("p1", "a.png", "normal", "rsna"), Record("p2", "b.png", "pneumonia", "rsna")]
    assert read_split(path) == expected
    checked = read_split_checked(path, duplicates="error")  # a repeat cannot change what is read
    assert list(checked.records) == expected and checked.conflicts == ()
    assert checked.repeated_lines == (RepeatedLine("a.png", first_line=1, repeat_lines=(3, 4)),)
    assert checked.repeated_line_count == 2


# v4's train file lists one image under two patient ids.
@pytest.mark.parametrize(
    ("again", "differs"),
    [
        ("p9 a.png COVID-19 sirm", ("patient_id",)),
        ("p1 a.png pneumonia sirm", ("label",)),
        ("p1 a.png COVID-19 cohen", ("source",)),
        ("p9 a.png normal", ("patient_id", "label", "source")),
    ],
)
def test_a_filename_listed_with_other_fields_keeps_the_first_line_and_records_the_conflict(
    tmp_path, caplog, again, differs
):
    images = tmp_path / "train"
    images.mkdir()
    for name in ("a.png", "b.png"):
        (images / name).write_bytes(b"x")
    path = _write(tmp_path, f"p1 a.png COVID-19 sirm\np2 b.png COVID-19\n{again}\n")
    with caplog.at_level(logging.WARNING):
        checked = read_split_checked(path, images)
    assert [record.patient_id for record in checked.records] == ["p1", "p2"]
    [conflict] = checked.conflicts
    assert isinstance(conflict, FilenameConflict) and conflict.filename == "a.png"
    assert (conflict.kept_line, conflict.dropped_line, conflict.differs) == (1, 3, differs)
    assert conflict.kept == checked.records[0] and conflict.dropped.to_line() == again
    assert checked.repeated_lines == ()
    assert "kept the first" in caplog.text and "'a.png'" in caplog.text
    assert read_split(path, images) == list(checked.records)


def test_duplicates_error_refuses_a_conflict_naming_both_lines(tmp_path):
    error = _error(tmp_path, "p1 a.png normal\np2 b.png normal\np3 a.png normal\n", duplicates="error")
    assert error.line == 3 and "'a.png'" in str(error)
    assert "line 1" in str(error) and "line 3" in str(error) and "'p1' vs 'p3'" in str(error)
    with pytest.raises(ValueError, match="duplicates"):
        read_split_checked(_write(tmp_path, "p a.png normal\n"), duplicates="drop")


def test_severity_labels_are_refused_naming_the_supported_label_sets(tmp_path):
    error = _error(tmp_path, "p1 a.png level1 actmed\np2 b.png level2 actmed\n")
    assert error.line == 1 and "unknown label 'level1'" in str(error)
    assert "3-class (normal, pneumonia, COVID-19)" in str(error)
    assert "binary (negative, positive)" in str(error)
    assert "severity" in str(error)


RECORDS = ["p1 a.png normal", "COVID 1 COVID(1).png COVID-19 sirm", "p3 c.png pneumonia"]


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029", "\x0c", "\x0b"])
def test_unicode_and_control_line_breaks_separate_records(tmp_path, caplog, separator):
    path = _write(tmp_path, "\n" + separator.join(RECORDS) + "\n")
    with caplog.at_level(logging.WARNING):
        assert read_split(path) == [parse_line(line) for line in RECORDS]
    assert f"line 2 ends in U+{ord(separator):04X}" in caplog.text
    error = _error(tmp_path, separator.join([*RECORDS, "p4 d.png Normal"]) + "\n")
    assert error.line == 4 and "unknown label 'Normal'" in str(error)


def test_crlf_files_read_like_lf_files(tmp_path):
    path = _write(tmp_path, "\r\n".join(RECORDS) + "\r\n")
    assert read_split(path) == [parse_line(line) for line in RECORDS]
    error = _error(tmp_path, "p1 a.png normal\r\n\r\np3 c.png Normal\r\n")
    assert error.line == 3 and "unknown label 'Normal'" in str(error)


@pytest.mark.parametrize(("text", "code"), [("p1 a.png normal\x1fp2 b.png normal\n", "U+001F"),
                                            ("p1 a.png normal\n\ufeffp2 b.png normal\n", "U+FEFF")])
def test_control_characters_inside_a_line_are_refused(tmp_path, text, code):
    error = _error(tmp_path, text)
    assert code in str(error) and error.line == text.count("\n")


@pytest.mark.parametrize("content", [b"\x00" * 5_000_000, b"p a.png normal\n" + b"\x00\xff" * 1_000_000])
def test_binary_split_files_get_one_short_error(tmp_path, content):
    path = tmp_path / "split.txt"
    path.write_bytes(content)
    with pytest.raises(SplitFileError, match="not a text file: NUL byte at offset") as caught:
        read_split(path)
    assert len(str(caught.value)) < 500 and str(path) in str(caught.value)


LONG = "x" * 100_000


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"{LONG}\n", "malformed line"),
        (f"p a.png {LONG}\n", "unknown label"),
        (f"p a.png normal {LONG}\n", "unknown source"),
        (f"p ../{LONG}.png normal\n", "escapes the image folder"),
        (f"{LONG} {LONG} a.png normal\n", "patient id"),
    ],
)
def test_long_values_are_clipped_in_error_messages(tmp_path, text, words):
    error = _error(tmp_path, text)
    assert words in str(error) and "…" in str(error) and len(str(error)) < 500


def test_missing_long_filename_is_an_error_not_a_crash(tmp_path):
    error = _error(tmp_path, f"p {LONG}.png normal\n", image_dir=tmp_path)
    assert error.line == 1 and len(str(error)) < 500


def test_over_long_patient_id_is_refused_naming_the_line(tmp_path):
    error = _error(tmp_path, "p1 a.png normal\n" + "word " * 60 + "b.png normal\n")
    assert error.line == 2 and "patient id is 299 characters" in str(error) and "at most 200" in str(error)


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
