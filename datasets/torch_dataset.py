"""The PyTorch side of `datasets`: COVIDx records as a torch Dataset, and torchvision v2 transforms.

This is the one `datasets` module that imports torch/torchvision; the rest of the package stays on
numpy/OpenCV. Images are read with `datasets.images.read_image` (float32 (H, W) in [0, 1]) and
handed to the transform as a `tv_tensors.Image` of shape (1, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from datasets.covidx import LABELS_3CLASS, Record
from datasets.errors import DatasetError
from datasets.images import read_image

# The label order of every model output and target index: 0 normal, 1 pneumonia, 2 COVID-19.
LABEL_ORDER: tuple[str, ...] = LABELS_3CLASS

Transform = Callable[[torch.Tensor], torch.Tensor]


class CXRDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """Records with resolved paths (`read_split(..., image_dir)`) as `(image, label index, index)`.

    image: float32 tensor (1, H, W), values in [0, 1] unless `transform` changes them; label index:
    the position of the record's label in `labels` (default LABEL_ORDER); index: the item's position
    in `records`, so predictions can be joined back to the records after shuffling.

    `transform` is any callable on a (1, H, W) tensor, typically a torchvision.transforms.v2 pipeline
    (see `default_transform`); random v2 transforms draw from torch's global generator (seed it, or
    use DataLoader's per-worker seeding). Raises DatasetError for a record without a path or with a
    label outside `labels`, when the dataset is built; an unreadable image raises ImageReadError
    (naming the file) when it is loaded.
    """

    def __init__(
        self, records: Sequence[Record], transform: Transform | None = None, *, labels: Sequence[str] = LABEL_ORDER
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.labels = tuple(labels)
        for record in self.records:
            if record.path is None:
                raise DatasetError(record.filename, "record has no image path: read the split with an image folder "
                                   "(read_split(split_file, image_dir))")
            if record.label not in self.labels:
                raise DatasetError(record.path, f"label {record.label!r} is not one of {list(self.labels)}")
        self.targets = [self.labels.index(record.label) for record in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index %= len(self)
        record = self.records[index]
        image = tv_tensors.Image(torch.from_numpy(read_image(record.path)).unsqueeze(0))
        if self.transform is not None:
            image = self.transform(image)
        return image.as_subclass(torch.Tensor), self.targets[index], index

    def class_counts(self) -> list[int]:
        """Images per label, in `labels` order."""
        return [self.targets.count(target) for target in range(len(self.labels))]


def default_transform(
    size: int | None = None, *, train: bool = False, mean: float | None = None, std: float | None = None
) -> v2.Compose:
    """A torchvision v2 pipeline on (1, H, W) float images.

    size: resize to size×size (antialiased), else keep the size. train: add mild augmentation (small
    affine: ±5°, 4% shift, 0.95–1.05 scale; brightness/contrast ±10%) — no flips, which would move the
    heart and the laterality markers. mean/std: normalise as (x − mean) / std when both are given.
    """
    steps: list[Callable] = [v2.ToDtype(torch.float32, scale=True)]
    if size is not None:
        steps.append(v2.Resize((size, size), antialias=True))
    if train:
        steps += [v2.RandomAffine(degrees=5, translate=(0.04, 0.04), scale=(0.95, 1.05)),
                  v2.ColorJitter(brightness=0.1, contrast=0.1)]
    if mean is not None and std is not None:
        steps.append(v2.Normalize([mean], [std]))
    return v2.Compose(steps)
