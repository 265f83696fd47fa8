"""`igos.insertion_deletion` against the slow references of docs/igos.md §7.1 and §7.3, and hand-computed AUCs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import igos
from igos._composition import heavy_blur_size
from tests.igos import reference as ref
from tests.igos.reference import as_tensor as t
from tests.igos.reference import assert_close as close


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def inputs(channels: int, size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 0.8, size=(2, channels, 3, 3))
    images = np.stack([np.stack([ref.upsample(c, size) for c in image]) for image in coarse])
    return images + 0.3 * rng.normal(size=images.shape)


def top1(model: torch.nn.Module, image: np.ndarray) -> int:
    with torch.no_grad():
        return int(model(t(image)[None]).argmax())


class RegionModel(torch.nn.Module):
    """Logits (gain · mean over `region` of the channel-mean pixel − offset, 0): softmax = σ of the first."""

    def __init__(self, region: tuple[slice, slice], gain: float, offset: float = 0.0) -> None:
        super().__init__()
        self.region, self.gain, self.offset = region, gain, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = self.gain * x.mean(dim=1)[:, self.region[0], self.region[1]].mean(dim=(1, 2)) - self.offset
        return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)


# ----------------------------------------------------------------------------------------------
# Protocol "igos" (docs/igos.md §7.1) against the reference
# ----------------------------------------------------------------------------------------------

IGOS_CASES = [  # channels, input size, saliency size, explicit baseline?, quantised saliency (ties)?
    (1, (12, 16), (11, 13), True, False),  # P = 143: q = 2, n = 72, r = 1
    (3, (10, 10), (10, 10), False, False),  # P = 100 at input resolution: q = 2, n = 50, r = 2
    (3, (10, 10), (7, 7), True, True),  # P = 49: q = 1, with ties broken by flat index
    (1, (12, 16), (3, 4), False, False),  # soft cell borders, default baseline
]


@pytest.mark.parametrize("channels, size, saliency_size, explicit, ties", IGOS_CASES)
def test_igos_protocol_matches_reference(channels, size, saliency_size, explicit, ties):
    model = ref.TinyNet(channels, seed=7)
    images = inputs(channels, size, seed=1)
    rng = np.random.default_rng(2)
    saliency = rng.uniform(size=(2, *saliency_size))
    if ties:
        saliency = np.round(saliency * 4) / 4
    if explicit:
        baselines = 0.2 * rng.normal(size=images.shape)
    else:  # the default baseline: the heavy reflect-101 blur of the input, scaled to its size (docs/igos.md §5.2)
        kernel = ref.gaussian_kernel(*heavy_blur_size(*size))
        baselines = np.stack([ref.blur(image, kernel, "reflect101") for image in images])
    got = igos.insertion_deletion(model, t(images), t(saliency), baseline=t(baselines) if explicit else None,
                                  batch_size=16)
    assert got.protocol == "igos"
    cells = saliency_size[0] * saliency_size[1]
    _, n, _ = ref.step_rule(cells)
    for b in range(2):
        target = top1(model, images[b])
        expected = ref.igos_metric(model, images[b], baselines[b], saliency[b], target)
        close(got.fractions, expected["fractions"])
        close(got.deletion_curve[b], expected["deletion_curve"])
        close(got.insertion_curve[b], expected["insertion_curve"])
        close(got.deletion[b], expected["deletion"])
        close(got.insertion[b], expected["insertion"])
        # docs/igos.md §7.1: n + 1 points; deletion runs f_c(I) -> f_c(B), insertion f_c(B) -> f_c(I), x from 0 to 1
        assert len(expected["deletion_curve"]) == n + 1 and got.deletion_curve.shape == (2, n + 1)
        clean, blurred = ref.score(model, images[b], target), ref.score(model, baselines[b], target)
        close([got.deletion_curve[b, 0], got.deletion_curve[b, -1]], [clean, blurred])
        close([got.insertion_curve[b, 0], got.insertion_curve[b, -1]], [blurred, clean])
        close([got.fractions[0], got.fractions[-1]], [0.0, 1.0])


def test_igos_protocol_removes_q_cells_per_step_and_r_at_the_end():
    """P = 143 cells: q = 2, n = 72, the last step removes r = 1 (docs/igos.md §7.1)."""
    model = ref.TinyNet(1, seed=7)
    images = inputs(1, (12, 16), seed=3)
    saliency = np.random.default_rng(4).uniform(size=(2, 11, 13))
    got = igos.insertion_deletion(model, t(images), t(saliency))
    close(got.fractions, [min(2 * j, 143) / 143 for j in range(73)])


# ----------------------------------------------------------------------------------------------
# Protocol "rise" (docs/igos.md §7.3) against the reference
# ----------------------------------------------------------------------------------------------

RISE_CASES = [  # channels, input size, saliency size, steps argument
    (3, (10, 10), (5, 5), 20),  # 5 pixels per step
    (3, (10, 10), (4, 3), 7),  # ⌈100/7⌉ = 15 pixels per step, 7 steps, the last one of 10
    (1, (12, 16), (3, 4), 24),  # 8 pixels per step
]


def rise_step(size: tuple[int, int], steps: int) -> int:
    """Pixels per step when `steps` steps are asked for: ⌈HW/steps⌉."""
    return -(-(size[0] * size[1]) // steps)


@pytest.mark.parametrize("channels, size, saliency_size, steps", RISE_CASES)
def test_rise_protocol_matches_reference(channels, size, saliency_size, steps):
    """Deletion to zeros; insertion from the nearly flat 11×11/σ=5 blur of docs/igos.md §7.3 (centre 0.0088)."""
    model = ref.TinyNet(channels, seed=8)
    images = inputs(channels, size, seed=5)
    saliency = np.random.default_rng(6).uniform(size=(2, *saliency_size))
    got = igos.insertion_deletion(model, t(images), t(saliency), protocol="rise", steps=steps, batch_size=16)
    assert got.protocol == "rise"
    for b in range(2):
        expected = ref.rise_metric(model, images[b], saliency[b], top1(model, images[b]), rise_step(size, steps))
        close(got.fractions, expected["fractions"])
        for curve in ("deletion", "insertion"):
            close(getattr(got, f"{curve}_curve")[b], expected[f"{curve}_curve"])
            close(getattr(got, curve)[b], expected[curve])


def test_rise_protocol_default_at_224():
    """224×224: 224 pixels per step, 224 steps, 225 points (docs/igos.md §7.3)."""
    model = ref.TinyNet(1, seed=9)
    rng = np.random.default_rng(7)
    image = 0.5 * rng.normal(size=(1, 1, 224, 224))
    saliency = rng.uniform(size=(1, 4, 4))
    got = igos.insertion_deletion(model, t(image), t(saliency), protocol="rise")
    assert got.deletion_curve.shape == (1, 225) and got.fractions.shape == (225,)
    expected = ref.rise_metric(model, image[0], saliency[0], top1(model, image[0]), 224,
                               insertion_kernel=ref.gaussian_kernel(3, 1.0))  # insertion not compared here
    close(got.fractions, expected["fractions"])
    close(got.deletion_curve[0], expected["deletion_curve"])
    close(got.deletion[0], expected["deletion"])
    close(got.deletion_curve[0, -1], ref.score(model, np.zeros((1, 224, 224)), top1(model, image[0])))


# ----------------------------------------------------------------------------------------------
# Hand-computed curves and AUCs
# ----------------------------------------------------------------------------------------------


def test_hand_computed_auc_at_input_resolution():
    """1×4×4 image of ones, zero baseline, model σ(4·mean of the top-left 2×2), the 2×2 ranked first.

    P = 16, q = 1: deleting region cell j leaves mean (4 − j)/4, so p_j = σ(4 − j) up to j = 4, then σ(0).
    Inserting them gives p_j = σ(j), then σ(4). Trapezoid with Δx = 1/16.
    """
    model = RegionModel((slice(0, 2), slice(0, 2)), gain=4.0)
    image = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    saliency = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.05, 0.15],
                             [0.25, 0.35, 0.45, 0.55], [0.65, 0.01, 0.02, 0.03]], dtype=torch.float64)
    saliency[:2, :2] = torch.tensor([[1.0, 0.9], [0.8, 0.7]])
    s = sigmoid
    deletion_curve = [s(4), s(3), s(2), s(1)] + [0.5] * 13
    insertion_curve = [0.5, s(1), s(2), s(3)] + [s(4)] * 13
    deletion_auc = ((s(4) + s(3)) / 2 + (s(3) + s(2)) / 2 + (s(2) + s(1)) / 2 + (s(1) + 0.5) / 2 + 12 * 0.5) / 16
    insertion_auc = ((0.5 + s(1)) / 2 + (s(1) + s(2)) / 2 + (s(2) + s(3)) / 2 + (s(3) + s(4)) / 2 + 12 * s(4)) / 16

    got = igos.insertion_deletion(model, image, saliency[None], baseline=torch.zeros_like(image))
    close(got.deletion_curve[0], deletion_curve)
    close(got.insertion_curve[0], insertion_curve)
    close(got.fractions, [j / 16 for j in range(17)])
    close(got.deletion[0], deletion_auc)
    close(got.insertion[0], insertion_auc)

    # RISE deletion (to zeros, one pixel per step) gives the same curve here
    rise = igos.insertion_deletion(model, image, saliency[None], protocol="rise", steps=16)
    close(rise.deletion_curve[0], deletion_curve)
    close(rise.deletion[0], deletion_auc)


def test_hand_computed_auc_with_soft_cells():
    """1×3×3 image of ones, zero baseline, model σ(4·mean of the whole image), a 2×2 saliency map.

    U with align_corners maps 2 → 3 with weights (1, 0), (½, ½), (0, 1): each cell carries exactly ¼ of
    the image mean, so after j deletions the mean is (4 − j)/4 (p_j = σ(4 − j)) and after j insertions
    j/4 (p_j = σ(j)). Δx = 1/4.
    """
    model = RegionModel((slice(0, 3), slice(0, 3)), gain=4.0)
    image = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    saliency = torch.tensor([[[0.3, 0.9], [0.1, 0.6]]], dtype=torch.float64)
    got = igos.insertion_deletion(model, image, saliency, baseline=torch.zeros_like(image))
    s = sigmoid
    close(got.deletion_curve[0], [s(4), s(3), s(2), s(1), s(0)])
    close(got.insertion_curve[0], [s(0), s(1), s(2), s(3), s(4)])
    close(got.deletion[0], ((s(4) + s(3)) / 2 + (s(3) + s(2)) / 2 + (s(2) + s(1)) / 2 + (s(1) + s(0)) / 2) / 4)
    close(got.insertion[0], ((s(0) + s(1)) / 2 + (s(1) + s(2)) / 2 + (s(2) + s(3)) / 2 + (s(3) + s(4)) / 2) / 4)
    # the midpoint state j = 2 (cells (0, 1) and (1, 1) removed): the deletion image is the right half dimmed
    keep = ref.upsample(np.array([[1.0, 0.0], [1.0, 0.0]]), (3, 3))
    close(keep, [[1.0, 0.5, 0.0]] * 3)


# ----------------------------------------------------------------------------------------------
# A perfect ranking beats a random one
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol, saliency_size", [("igos", (16, 16)), ("igos", (8, 8)), ("rise", (16, 16)),
                                                      ("rise", (8, 8))])
def test_perfect_ranking_beats_random_ranking(protocol, saliency_size):
    """The model reads only a 4×4 window; the image is bright there. Ranking the window first must give
    higher insertion and lower deletion than random rankings."""
    model = RegionModel((slice(4, 8), slice(8, 12)), gain=8.0, offset=4.0)
    rng = np.random.default_rng(10)
    image = 0.05 * rng.normal(size=(1, 1, 16, 16))
    image[0, 0, 4:8, 8:12] = 1.0
    factor = 16 // saliency_size[0]
    perfect = 0.1 * rng.uniform(size=saliency_size)
    perfect[4 // factor : 8 // factor, 8 // factor : 12 // factor] += 1.0
    randoms = rng.uniform(size=(5, *saliency_size))
    maps = np.concatenate([perfect[None], randoms])
    images = np.repeat(image, len(maps), axis=0)
    got = igos.insertion_deletion(model, t(images), t(maps), protocol=protocol, targets=[0] * len(maps))
    assert (got.insertion[0] > got.insertion[1:] + 0.1).all(), got.insertion
    assert (got.deletion[0] < got.deletion[1:] - 0.1).all(), got.deletion
