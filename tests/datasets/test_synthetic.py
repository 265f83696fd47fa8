"""The synthetic radiographs: deterministic, valid ranges, ground truth where the pixels are; the synthetic COVIDx
folder on disk (layout, split files, ground truth, shortcut strength, overwrite rules) and `cxr-audit synth`."""

import hashlib
import json
from collections import Counter

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from datasets.covidx import SOURCES as COVIDX_SOURCES
from datasets.covidx import check_disjoint, read_split
from datasets.images import read_image
from datasets.synthetic import (
    MANIFEST,
    SPLIT_FILES,
    SPLITS,
    generate,
    read_truth,
    sample,
    split_records,
)
from datasets.synthetic_radiograph import LABELS, chest_radiograph
from datasets.synthetic_text import HOME_HOSPITAL, HOSPITAL_NAMES, HOSPITALS, burn_text
from flows.cli import app


def test_same_seed_same_images_other_seed_other_images():
    first, again, other = sample(6, size=64, seed=1), sample(6, size=64, seed=1), sample(6, size=64, seed=2)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True))


def test_images_are_float32_unit_range_and_labels_cycle():
    images = sample(9, size=64, seed=0)
    assert [item.label for item in images] == list(LABELS) * 3
    for item in images:
        assert item.image.dtype == np.float32 and item.image.shape == (64, 64)
        assert 0 <= item.image.min() and item.image.max() <= 1


def test_text_lies_inside_its_boxes_and_nowhere_else():
    for item in sample(6, size=96, seed=3):
        changed = np.abs(item.image - item.clean) > 1e-6
        inside = np.zeros_like(changed)
        for box in item.text_boxes:
            assert 0 <= box.x0 < box.x1 <= 96 and 0 <= box.y0 < box.y1 <= 96
            inside[box.y0 : box.y1, box.x0 : box.x1] = True
        assert changed.any() and not (changed & ~inside).any()


def test_lesions_only_in_diseased_classes():
    for item in sample(9, size=64, seed=4):
        assert item.lesion.any() == (item.label != "normal")


@pytest.mark.parametrize("shortcut", [1.0, 0.0])
def test_shortcut_sets_how_often_the_source_matches_the_label(shortcut):
    images = sample(300, size=32, seed=5, shortcut=shortcut)
    matches = np.mean([item.source == HOME_HOSPITAL[item.label] for item in images])
    assert matches == 1.0 if shortcut == 1.0 else abs(matches - 1 / len(HOSPITALS)) < 0.08


# ---- chest_radiograph, burn_text and generate (the synthetic COVIDx on disk) -------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small synthetic COVIDx: 45 train, 24 test, 24 test_decorrelated images of 64×64."""
    return generate(tmp_path_factory.mktemp("synthetic") / "covidx", n_train=45, n_test=24, image_size=64, seed=7)


def _gray(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_covidx_and_split_files_read_with_their_images(small):
    for split, count in (("train", 45), ("test", 24), ("test_decorrelated", 24)):
        records = read_split(small / SPLIT_FILES[split], small / split)
        assert len(records) == count
        assert all(r.source in HOSPITAL_NAMES and r.label in LABELS for r in records)
        assert sorted(p.name for p in (small / split).iterdir()) == sorted(r.filename for r in records)
        lines = (small / SPLIT_FILES[split]).read_text().splitlines()
        assert all(len(line.split(" ")) == 4 for line in lines)
    assert json.loads((small / MANIFEST).read_text())["splits"]["train"]["images"] == 45
    assert not list(small.rglob(".*"))  # no temporary files left behind


def test_labels_are_balanced_patients_repeat_and_train_test_share_no_patient(small):
    train, test = split_records(small, "train"), split_records(small, "test")
    assert Counter(r.label for r in train) == dict.fromkeys(LABELS, 15)
    assert max(Counter(r.label for r in test).values()) - min(Counter(r.label for r in test).values()) <= 2
    per_patient = Counter(r.patient_id for r in train)
    assert set(per_patient.values()) == {1, 2}
    assert all(len({r.label for r in train if r.patient_id == p}) == 1 for p in per_patient)
    assert check_disjoint(train, test) == set()


def test_ground_truth_describes_every_image(small):
    for split in SPLITS:
        records, truths = split_records(small, split), read_truth(small, split)
        assert [(t.patient_id, t.filename, t.label, t.source) for t in truths] == \
            [(r.patient_id, r.filename, r.label, r.source) for r in records]
        for truth in truths:
            assert truth.home_source == (truth.source == HOME_HOSPITAL[truth.label])
            lesion, clean = _gray(small / truth.lesion), _gray(small / truth.clean)
            assert lesion.shape == clean.shape == (64, 64) and lesion.dtype == clean.dtype == np.uint8
            assert set(np.unique(lesion)) <= {0, 255}
            assert lesion.any() == (truth.label != "normal")
            assert 0 <= truth.severity <= 1 and (truth.severity == 0) == (truth.label == "normal")
            for box in truth.text_boxes:
                assert 0 <= box.x0 < box.x1 <= 64 and 0 <= box.y0 < box.y1 <= 64
                assert box.text and box.kind in {"laterality", "view", "portable", "site", "date"}


def test_text_changes_pixels_only_inside_its_boxes_on_disk(small):
    with_text = 0
    for split in SPLITS:
        for truth in read_truth(small, split):
            image, clean = _gray(small / split / truth.filename), _gray(small / truth.clean)
            inside = np.zeros(image.shape, bool)
            for box in truth.text_boxes:
                inside[box.y0 : box.y1, box.x0 : box.x1] = True
            changed = image != clean
            assert not (changed & ~inside).any()
            with_text += bool(truth.text_boxes)
            assert changed.any() == bool(truth.text_boxes) or not truth.text_boxes
    assert with_text >= 0.8 * (45 + 24 + 24)


def test_test_decorrelated_is_test_with_only_the_text_redrawn(small):
    test, decorrelated = read_truth(small, "test"), read_truth(small, "test_decorrelated")
    assert [(t.patient_id, t.filename, t.label) for t in test] == [(t.patient_id, t.filename, t.label) for t in
                                                                   decorrelated]
    for a, b in zip(test, decorrelated, strict=True):
        assert (small / a.clean).read_bytes() == (small / b.clean).read_bytes()
        assert (small / a.lesion).read_bytes() == (small / b.lesion).read_bytes()
    assert sum(a.source != b.source for a, b in zip(test, decorrelated, strict=True)) >= 10


def test_same_seed_writes_the_same_files_other_seed_other_images(tmp_path):
    first = _digest(generate(tmp_path / "a", n_train=9, n_test=6, image_size=48, seed=3))
    again = _digest(generate(tmp_path / "b", n_train=9, n_test=6, image_size=48, seed=3))
    other = _digest(generate(tmp_path / "c", n_train=9, n_test=6, image_size=48, seed=4))
    assert first == again
    shared = [name for name in first if name.startswith("clean/") and name in other]
    assert shared and all(first[name] != other[name] for name in shared)


@pytest.mark.parametrize("shortcut", [1.0, 0.9, 0.0])
def test_shortcut_sets_how_often_the_hospital_is_the_labels_own(tmp_path, shortcut):
    root = generate(tmp_path / "s", n_train=240, n_test=240, image_size=32, seed=1, shortcut=shortcut,
                    repeat_fraction=0.0)
    expected = shortcut + (1 - shortcut) / len(HOSPITALS)
    for split in ("train", "test"):
        home = np.mean([t.home_source for t in read_truth(root, split)])
        assert home == 1.0 if shortcut == 1.0 else abs(home - expected) < 0.08
    decorrelated = read_truth(root, "test_decorrelated")
    assert abs(np.mean([t.home_source for t in decorrelated]) - 1 / len(HOSPITALS)) < 0.08
    for label in LABELS:  # the hospital mix is the same whatever the label
        ricord = np.mean([t.source == "ricord" for t in decorrelated if t.label == label])
        assert abs(ricord - 1 / len(HOSPITALS)) < 0.13


def test_covid_images_come_from_the_hospital_with_the_portable_plate():
    assert HOME_HOSPITAL == {"normal": "rsna", "pneumonia": "cohen", "COVID-19": "ricord"}
    assert set(HOSPITAL_NAMES) <= COVIDX_SOURCES and len(set(HOSPITAL_NAMES)) == len(HOSPITALS)
    ricord = HOSPITALS[HOSPITAL_NAMES.index("ricord")]
    portable = [h for h in ricord.habits if h.kind == "portable"]
    assert portable and portable[0].dark and portable[0].plate and portable[0].probability >= 0.9
    habits = {h.name: {(t.kind, t.anchor, t.dark, t.plate) for t in h.habits} for h in HOSPITALS}
    assert len({frozenset(v) for v in habits.values()}) == len(HOSPITALS)  # every hospital has its own habits


def test_refuses_a_non_empty_folder_unless_overwrite_and_never_deletes_foreign_files(tmp_path):
    root = generate(tmp_path / "d", n_train=3, n_test=3, image_size=32)
    with pytest.raises(FileExistsError, match="not empty"):
        generate(root, n_train=3, n_test=3, image_size=32)
    (root / "train" / "stale.png").write_bytes(b"x")
    generate(root, n_train=6, n_test=3, image_size=32, overwrite=True)
    assert len(split_records(root, "train")) == 6 and not (root / "train" / "stale.png").exists()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        generate(root, n_train=3, n_test=3, image_size=32, overwrite=True)
    assert (root / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("arguments", "message"), [
    ({"n_train": 2}, "n_train must be at least 3"),
    ({"image_size": 16}, "image_size must be at least 32"),
    ({"shortcut": 1.5}, "shortcut must be in"),
    ({"repeat_fraction": -0.1}, "repeat_fraction must be in"),
    ({"seed": -1}, "seed must be"),
])
def test_bad_arguments_are_rejected(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "x", **{"n_train": 3, "n_test": 3, "image_size": 32, **arguments})
    assert not (tmp_path / "x").exists()


def test_radiograph_anatomy_lungs_dark_mediastinum_and_abdomen_bright():
    for seed in range(12):
        film = chest_radiograph("normal", size=128, seed=seed)
        lung = np.mean([film.clean[45:70, 28:40].mean(), film.clean[45:70, 88:100].mean()])
        mediastinum = film.clean[40:70, 60:68].mean()
        abdomen = film.clean[108:116, 50:78].mean()
        corner = film.clean[:6, :6].mean()
        assert lung + 0.15 < mediastinum and lung + 0.15 < abdomen and corner < lung
        assert film.clean.dtype == np.float32 and 0 <= film.clean.min() and film.clean.max() <= 1


def test_exposure_and_pose_vary_between_films():
    films = [chest_radiograph("normal", size=64, seed=s) for s in range(20)]
    assert np.std([f.clean.mean() for f in films]) > 0.02
    assert np.std([f.pose["angle"] for f in films]) > 1


def test_lesion_adds_opacity_inside_its_mask_and_nothing_else_changes():
    for label in ("pneumonia", "COVID-19"):
        for seed in range(6):
            sick = chest_radiograph(label, size=96, seed=seed, severity=1.0)
            faint = chest_radiograph(label, size=96, seed=seed, severity=0.0)
            assert np.array_equal(sick.lesion, faint.lesion) and sick.lesion.any()
            difference = sick.clean - faint.clean
            assert difference[sick.lesion].mean() > 0.05
            assert difference[sick.lesion].mean() > 5 * np.abs(difference[~sick.lesion]).mean()
    assert np.array_equal(chest_radiograph("normal", size=64, seed=1, severity=1.0).clean,
                          chest_radiograph("normal", size=64, seed=1, severity=0.0).clean)


def test_covid_is_bilateral_peripheral_and_lower_zone_pneumonia_is_one_sided():
    sides = []
    for seed in range(12):
        covid = chest_radiograph("COVID-19", size=96, seed=seed)
        rows, cols = np.nonzero(covid.lesion)
        lung_rows, lung_cols = np.nonzero(covid.lungs)
        assert (covid.lesion & ~covid.lungs).mean() < 0.01, "inside the lungs"
        assert (cols < 44).any() and (cols > 52).any(), "bilateral"
        assert rows.mean() > lung_rows.mean() + 0.05 * np.ptp(lung_rows), "lower zones"
        assert np.abs(cols - 48).mean() > np.abs(lung_cols - 48).mean(), "peripheral"
        pneumonia = chest_radiograph("pneumonia", size=96, seed=seed).lesion
        cols = np.nonzero(pneumonia)[1]
        assert (cols < 48).all() or (cols > 48).all(), "one lung"
        sides.append(cols.mean() < 48)
    assert 0 < sum(sides) < len(sides)


def test_one_patient_seed_gives_one_chest_whatever_the_label():
    normal = chest_radiograph("normal", size=64, seed=(2, 5))
    covid = chest_radiograph("COVID-19", size=64, seed=(2, 5))
    second_film = chest_radiograph("normal", size=64, seed=(2, 5), image=1)
    assert np.abs(covid.clean - normal.clean)[~covid.lesion].mean() < 0.01
    assert not np.array_equal(second_film.clean, normal.clean)


def test_burned_text_differs_by_hospital_and_stays_in_its_boxes():
    clean = chest_radiograph("normal", size=128, seed=0).clean
    corners = {}
    for hospital in HOSPITALS:
        image, boxes = burn_text(clean, hospital, np.random.default_rng(1))
        inside = np.zeros(clean.shape, bool)
        for box in boxes:
            inside[box.y0 : box.y1, box.x0 : box.x1] = True
        assert boxes and not (np.abs(image - clean) > 0)[~inside].any()
        corners[hospital.name] = {box.text for box in boxes}
    assert "PORTABLE" in corners["ricord"] and all("PORTABLE" not in v for k, v in corners.items() if k != "ricord")


def test_cli_synth_writes_a_dataset_and_refuses_to_overwrite(tmp_path):
    runner = CliRunner()
    assert "synth" in runner.invoke(app, ["--help"]).output
    arguments = ["synth", str(tmp_path / "cli"), "--n-train", "6", "--n-test", "3", "--image-size", "48"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "wrote 12 images" in result.output and "images/s" in result.output
    assert len(split_records(tmp_path / "cli", "test_decorrelated")) == 3
    first = split_records(tmp_path / "cli", "train")[0]
    assert read_image(first.path).shape == (48, 48)
    again = runner.invoke(app, arguments)
    assert again.exit_code == 1 and "not empty" in again.output
    assert runner.invoke(app, [*arguments, "--overwrite", "--seed", "2"]).exit_code == 0


def test_unknown_label_is_rejected():
    with pytest.raises(ValueError, match="label must be one of"):
        chest_radiograph("tuberculosis", size=32)
