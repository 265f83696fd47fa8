"""datasets.torch_dataset: records as (image (1, H, W), label index, index), torchvision v2 transforms, errors."""

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from datasets.covidx import LABELS_BINARY, Record, read_split
from datasets.errors import DatasetError, ImageReadError
from datasets.images import read_image
from datasets.synthetic import SPLIT_FILES, generate, split_records
from datasets.torch_dataset import LABEL_ORDER, CXRDataset, default_transform


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("torch") / "covidx", n_train=12, n_test=6, image_size=48, seed=2)


def test_label_order_is_the_documented_constant():
    assert LABEL_ORDER == ("normal", "pneumonia", "COVID-19")


def test_items_are_image_label_index_and_position(root):
    records = split_records(root, "train")
    dataset = CXRDataset(records)
    assert len(dataset) == 12 and dataset.class_counts() == [4, 4, 4]
    for index in (0, 5, 11):
        image, label, position = dataset[index]
        assert image.shape == (1, 48, 48) and image.dtype == torch.float32 and type(image) is torch.Tensor
        assert torch.equal(image[0], torch.from_numpy(read_image(records[index].path)))
        assert label == LABEL_ORDER.index(records[index].label) and position == index
    assert dataset[-1][2] == 11
    with pytest.raises(IndexError, match="out of range"):
        dataset[12]


def test_torchvision_v2_transforms_apply_to_the_image(root):
    records = split_records(root, "test")
    plain = CXRDataset(records)
    flipped = CXRDataset(records, transform=v2.RandomHorizontalFlip(p=1.0))
    assert torch.equal(flipped[0][0], plain[0][0].flip(-1))
    resized = CXRDataset(records, transform=default_transform(32, mean=0.5, std=0.25))
    image, _, _ = resized[1]
    expected = (v2.functional.resize(plain[1][0], [32, 32], antialias=True) - 0.5) / 0.25
    assert image.shape == (1, 32, 32) and torch.allclose(image, expected, atol=1e-6)


def test_training_augmentation_is_random_but_seedable_and_keeps_the_range(root):
    dataset = CXRDataset(split_records(root, "train"), transform=default_transform(40, train=True))
    torch.manual_seed(0)
    first = torch.stack([dataset[i][0] for i in range(4)])
    torch.manual_seed(0)
    again = torch.stack([dataset[i][0] for i in range(4)])
    other = torch.stack([dataset[i][0] for i in range(4)])
    assert first.shape == (4, 1, 40, 40) and torch.equal(first, again) and not torch.equal(first, other)
    assert 0 <= first.min() and first.max() <= 1


def test_data_loader_batches_with_indices_for_joining_back(root):
    dataset = CXRDataset(split_records(root, "train"))
    loader = DataLoader(dataset, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = []
    for images, labels, indices in loader:
        assert images.shape[1:] == (1, 48, 48) and labels.dtype == torch.int64
        assert labels.tolist() == [dataset.targets[i] for i in indices.tolist()]
        seen += indices.tolist()
    assert sorted(seen) == list(range(12))


def test_clean_copies_load_like_the_originals(root):
    originals = CXRDataset(split_records(root, "test"))
    cleans = CXRDataset(split_records(root, "test", clean=True))
    assert cleans.targets == originals.targets
    assert all(cleans[i][0].shape == originals[i][0].shape for i in range(len(cleans)))


def test_records_without_paths_or_with_foreign_labels_are_rejected(root):
    with pytest.raises(DatasetError, match="no image path"):
        CXRDataset(read_split(root / SPLIT_FILES["train"]))
    binary = [Record("p", "a.png", "positive", None, root / "train" / "x.png")]
    with pytest.raises(DatasetError, match="'positive' is not one of"):
        CXRDataset(binary)
    assert CXRDataset(binary, labels=LABELS_BINARY).targets == [1]


def test_an_unreadable_image_raises_naming_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        CXRDataset([Record("p", "bad.png", "normal", None, bad)])[0]


def test_the_dataset_reads_what_was_written_not_a_cache(root, tmp_path):
    record = split_records(root, "train")[0]
    copy = tmp_path / record.filename
    copy.write_bytes(record.path.read_bytes())
    dataset = CXRDataset([Record(record.patient_id, record.filename, record.label, record.source, copy)])
    before = dataset[0][0].clone()
    cv2.imwrite(str(copy), np.zeros((48, 48), np.uint8))
    assert before.sum() > 0 and dataset[0][0].sum() == 0
