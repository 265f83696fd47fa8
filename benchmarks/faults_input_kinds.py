"""The fault run's kinds of bad input and bad config (`python -m benchmarks.faults`): corrupt, empty, missing and
mislabelled images and split lines, unusual splits and run folders, and configs refused before any work.
INPUT_KINDS is their part of the table of kinds, in the order the run takes them."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np

from benchmarks.faults_trial import (
    DECORRELATED,
    DECORRELATED_IMAGE,
    TEST,
    TEST_IMAGE,
    TRAIN,
    TRAIN_IMAGE,
    Expect,
    Kind,
    Run,
    Trial,
    config_error,
    differences,
    edited_lines,
    replaced,
    set_field,
    split_error,
)

BAD_INPUT, CONFIG = "bad input", "config"


def data_quality(t: Trial) -> dict:
    """The run folder's data_quality.json (what was read from the splits: repeats, conflicts, overlap)."""
    return json.loads((t.run_dir / "data_quality.json").read_text())


def dicom_without_pixels() -> bytes:
    """A valid DICOM file (CR image attributes, fixed UIDs) that has no Pixel Data element."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.17"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("nopixels.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.PatientID, dataset.Rows, dataset.Columns = "CR", "faults", 64, 64
    dataset.BitsAllocated, dataset.BitsStored, dataset.SamplesPerPixel = 16, 12, 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# ---- bad input --------------------------------------------------------------------------------------------------


def truncated_png(t: Trial) -> Run:
    image = t.data / "train" / TRAIN_IMAGE
    with replaced(image, image.read_bytes()[: image.stat().st_size * 3 // 5]):
        return t.audit()


def zero_byte_image(t: Trial) -> Run:
    with replaced(t.data / "test" / TEST_IMAGE, b""):
        return t.audit()


def text_named_png(t: Trial) -> Run:
    with replaced(t.data / "train" / TRAIN_IMAGE, b"not an image: a text file named .png\n"):
        return t.audit()


def missing_image(t: Trial) -> Run:
    with replaced(t.data / "test_decorrelated" / DECORRELATED_IMAGE, None):
        return t.audit()


def extra_train_image(t: Trial, name: str, content: bytes) -> Run:
    """A train image `name` added with its split line (a new patient)."""
    line = f"synth-tr-90000 {name} normal rsna"
    with replaced(t.data / "train" / name, content), edited_lines(t.data / TRAIN, lambda lines: [*lines, line]):
        return t.audit()


def garbage_dicom(t: Trial) -> Run:
    return extra_train_image(t, "garbage.dcm", np.random.default_rng(0).bytes(4096))


def dicom_no_pixels(t: Trial) -> Run:
    return extra_train_image(t, "nopixels.dcm", dicom_without_pixels())


def short_split_line(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, lambda lines: [*lines[:4], " ".join(lines[4].split()[:2]), *lines[5:]]):
        return t.audit()


def unknown_label(t: Trial) -> Run:
    with edited_lines(t.data / TEST, lambda lines: [*lines[:2], set_field(lines[2], 2, "covid"), *lines[3:]]):
        return t.audit()


def severity_labelled(lines: list[str]) -> list[str]:
    return [set_field(line, 2, f"level{1 + k % 2}") for k, line in enumerate(lines)]


def severity_labels(t: Trial) -> Run:
    with edited_lines(t.data / TEST, severity_labelled):
        return t.audit()


def repeated_lines(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, lambda lines: [*lines, *lines[:2]]):
        run = t.audit()
    t.check(data_quality(t)["splits"]["train"]["repeated_lines"] == 2, "data_quality.json: repeated_lines != 2")
    t.problems += [f"read once, yet {problem}" for problem in differences(t.run_dir, t.baseline)]
    return run


def conflicting_line(lines: list[str]) -> list[str]:
    return [*lines, set_field(lines[0], 2, "COVID-19")]


def conflicting_duplicate(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, conflicting_line):
        run = t.audit()
    conflicts = data_quality(t)["splits"]["train"]["conflicts"]
    t.check([(c["kept_line"], c["dropped_line"]) for c in conflicts] == [(1, 37)],
            f"data_quality.json conflicts: {conflicts}")
    t.problems += [f"first line kept, yet {problem}" for problem in differences(t.run_dir, t.baseline)]
    return run


def duplicates_error(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, conflicting_line):
        return t.audit(config=t.config_with({"data": {"duplicates": "error"}}))


def overlapping(lines: list[str]) -> list[str]:
    """The test split with its first line given the first train patient's id."""
    return [set_field(lines[0], 0, "synth-tr-00000"), *lines[1:]]


def patient_overlap(t: Trial) -> Run:
    with edited_lines(t.data / TEST, overlapping):
        return t.audit()


def patient_overlap_allowed(t: Trial) -> Run:
    with edited_lines(t.data / TEST, overlapping):
        run = t.audit(config=t.config_with({"data": {"allow_patient_overlap": True}}))
    overlap = data_quality(t)["patient_overlap"]
    t.check(overlap.get("test_synthetic", {}).get("patients") == 1, f"data_quality.json patient_overlap: {overlap}")
    return run


def unusual_line_breaks(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, list, "\x85"), edited_lines(t.data / TEST, list, "\u2028"):
        run = t.audit()
    t.problems += [f"same records, yet {problem}" for problem in differences(t.run_dir, t.baseline)]
    return run


def nul_split(t: Trial) -> Run:
    split = t.data / TRAIN
    with replaced(split, b"\0" * split.stat().st_size):
        run = t.audit()
    t.check(len(run.message) <= 200, f"the message is {len(run.message)} characters long")
    return run


def empty_split(t: Trial) -> Run:
    with replaced(t.data / DECORRELATED, b""):
        return t.audit()


def missing_split(t: Trial) -> Run:
    with replaced(t.data / TEST, None):
        return t.audit()


def same_stem_splits(t: Trial) -> Run:
    return t.audit(tests=(TEST, f"other/{TEST}"))


def run_inside_data(t: Trial) -> Run:
    inside = t.data / "audit-run"
    run = t.audit(out=inside)
    t.check(not inside.exists(), "the run folder was created inside the source")
    return run


# ---- config -----------------------------------------------------------------------------------------------------


def bad_config(settings: dict) -> Callable[[Trial], Run]:
    """A kind that runs the audit with `settings` merged into tiny.yaml."""
    return lambda t: t.audit(config=t.config_with(settings))


def duplicate_yaml_key(t: Trial) -> Run:
    path = t.folder / "config.yaml"
    path.write_text(t.config.read_text() + "train:\n  epochs: 3\n")
    return t.audit(config=path)


# ---- the table --------------------------------------------------------------------------------------------------


INPUT_KINDS = (
    Kind("truncated-png", BAD_INPUT, f"train/{TRAIN_IMAGE} cut to 3/5 of its bytes", truncated_png,
         Expect(rejected=TRAIN_IMAGE)),
    Kind("zero-byte-image", BAD_INPUT, f"test/{TEST_IMAGE} (the audited split) emptied", zero_byte_image,
         Expect(rejected=TEST_IMAGE)),
    Kind("text-named-png", BAD_INPUT, f"train/{TRAIN_IMAGE} replaced by a line of text", text_named_png,
         Expect(rejected=TRAIN_IMAGE)),
    Kind("missing-image", BAD_INPUT, f"test_decorrelated/{DECORRELATED_IMAGE} deleted, still listed", missing_image,
         split_error(DECORRELATED, DECORRELATED_IMAGE)),
    Kind("garbage-dicom", BAD_INPUT, "train/garbage.dcm (4 KiB of random bytes) added to the train split",
         garbage_dicom, Expect(rejected="garbage.dcm")),
    Kind("dicom-without-pixels", BAD_INPUT, "train/nopixels.dcm (a DICOM without Pixel Data) added to the train split",
         dicom_no_pixels, Expect(rejected="nopixels.dcm")),
    Kind("short-split-line", BAD_INPUT, "line 5 of the train split without its label and source", short_split_line,
         split_error(f"{TRAIN}:5", "malformed line")),
    Kind("unknown-label", BAD_INPUT, "label `covid` on line 3 of the test split", unknown_label,
         split_error(f"{TEST}:3", "normal, pneumonia, COVID-19")),
    Kind("severity-labels", BAD_INPUT, "the test split labelled level1 / level2 (COVIDx severity)", severity_labels,
         split_error(f"{TEST}:1", "level1, level2")),
    Kind("repeated-lines", BAD_INPUT, "the first 2 train lines repeated verbatim at its end", repeated_lines,
         Expect()),
    Kind("conflicting-duplicate", BAD_INPUT, "train line 1 repeated at its end with another label",
         conflicting_duplicate, Expect()),
    Kind("duplicates-error", BAD_INPUT, "the same conflict with `data.duplicates: error`", duplicates_error,
         split_error(f"{TRAIN}:37", "line 1")),
    Kind("patient-overlap", BAD_INPUT, "test line 1 given a train patient's id", patient_overlap,
         split_error(TEST, "also in the training split")),
    Kind("patient-overlap-allowed", BAD_INPUT, "the same with `data.allow_patient_overlap: true`",
         patient_overlap_allowed, Expect()),
    Kind("unusual-line-breaks", BAD_INPUT, "train split lines separated by NEL (U+0085), test split by U+2028",
         unusual_line_breaks, Expect()),
    Kind("nul-split", BAD_INPUT, "the train split overwritten with NUL bytes", nul_split, split_error(TRAIN, "NUL")),
    Kind("empty-split", BAD_INPUT, "the test_decorrelated split emptied", empty_split,
         split_error(DECORRELATED, "no records")),
    Kind("missing-split", BAD_INPUT, "the test split file deleted", missing_split, split_error(TEST, "not found")),
    Kind("same-stem-test-splits", BAD_INPUT, f"--test-split {TEST} --test-split other/{TEST}", same_stem_splits,
         config_error("test_synthetic"), folder="none"),
    Kind("run-inside-data", BAD_INPUT, "--out data/audit-run (inside the source)", run_inside_data,
         config_error("inside the source"), folder="none"),
    Kind("negative-seed", CONFIG, "train.seed: -1", bad_config({"train": {"seed": -1}}), config_error("seed"),
         folder="none"),
    Kind("huge-mask", CONFIG, "explain.mask_size: 10000", bad_config({"explain": {"mask_size": 10000}}),
         config_error("mask_size"), folder="none"),
    Kind("huge-bootstrap", CONFIG, "compare.bootstrap: 10^12", bad_config({"compare": {"bootstrap": 10**12}}),
         config_error("bootstrap"), folder="none"),
    Kind("boolean-mask", CONFIG, "explain.mask_size: true", bad_config({"explain": {"mask_size": True}}),
         config_error("mask_size"), folder="none"),
    Kind("duplicate-yaml-key", CONFIG, "a second top-level `train:` mapping in the YAML", duplicate_yaml_key,
         config_error("duplicate key 'train'"), folder="none"),
    Kind("unknown-key", CONFIG, "train.epochz: 2 (a typo)", bad_config({"train": {"epochz": 2}}),
         config_error("epochz"), folder="none"),
)
