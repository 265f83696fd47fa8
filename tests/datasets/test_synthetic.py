"""The synthetic radiographs: deterministic, valid ranges, ground truth where the pixels are."""

import numpy as np
import pytest

from datasets.synthetic import LABELS, SOURCES, render, sample


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
    matches = np.mean([item.source == SOURCES[LABELS.index(item.label)].name for item in images])
    assert matches == 1.0 if shortcut == 1.0 else abs(matches - 1 / 3) < 0.08


def test_unknown_label_is_rejected():
    with pytest.raises(ValueError, match="label must be one of"):
        render("tuberculosis", SOURCES[0], np.random.default_rng(0), 32)
