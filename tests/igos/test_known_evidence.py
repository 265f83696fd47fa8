"""Known evidence: methods must point at the one window the model reads, not at an equal distractor."""

import pytest
import torch
from scipy.stats import pearsonr

import igos
from tests.igos.evidence import WindowEvidenceNet, evidence_images, top_fraction_inside, window_mask

SIZE = (64, 64)
WINDOW = (16, 32, 16, 16)  # top, left, height, width; the distractor sits at the mirrored corner
THRESHOLD = 0.8  # at least 80 % of the top-5 % salient pixels inside the window


@pytest.fixture(scope="module")
def model() -> WindowEvidenceNet:
    return WindowEvidenceNet(SIZE, WINDOW).double()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return evidence_images(2, SIZE, WINDOW)


@pytest.fixture(scope="module")
def explanations(model, images) -> dict[tuple[str, str], igos.Explanation]:
    return {(method, mode): igos.explain(model, images, method=method, mask_size=28, mode=mode, seed=3)
            for method in ("igos++", "igos") for mode in ("fast", "faithful")}


def test_model_reads_only_the_window(model, images):
    probability = torch.softmax(model(images), dim=1)[:, 1]
    assert (probability > 0.95).all()
    hidden = images.clone()
    top, left, height, width = WINDOW
    hidden[:, :, top : top + height, left : left + width] = 0.1
    assert (torch.softmax(model(hidden), dim=1)[:, 1] < 0.02).all()


@pytest.mark.parametrize("method", ["igos++", "igos"])
@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_mask_methods_find_the_window(explanations, method, mode):
    explanation = explanations[(method, mode)]
    inside = top_fraction_inside(explanation.upsample(), window_mask(SIZE, WINDOW))
    assert (inside >= THRESHOLD).all(), inside


def test_random_map_fails_the_same_check(images):
    random_map = torch.rand(len(images), *SIZE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert (top_fraction_inside(random_map, window_mask(SIZE, WINDOW)) < 0.3).all()


@pytest.mark.parametrize("method", ["igos++", "igos"])
def test_fast_and_faithful_modes_agree(explanations, method):
    # Pearson, not Spearman: most cells of an I-GOS map are ~1e-15 apart from 0, so their ranks are noise.
    fast, faithful = explanations[(method, "fast")], explanations[(method, "faithful")]
    for a, b in zip(fast.saliency, faithful.saliency, strict=True):
        assert pearsonr(a.flatten(), b.flatten()).statistic > 0.8


@pytest.mark.parametrize("method, options", [
    ("igos+", {"iterations": 10}),
    ("mask", {"iterations": 150}),
    ("gradient", {}),
    ("integrated-gradients", {"ig_steps": 8}),
    ("rise", {"n_masks": 400, "cell_grid": 8}),
])
def test_other_methods_find_the_window(model, images, method, options):
    explanation = igos.explain(model, images, method=method, mask_size=SIZE, seed=1, **options)
    inside = top_fraction_inside(explanation.upsample(), window_mask(SIZE, WINDOW))
    assert (inside >= THRESHOLD).all(), inside


def test_fast_mode_costs_fewer_passes(explanations):
    fast, faithful = explanations[("igos++", "fast")], explanations[("igos++", "faithful")]
    assert fast.passes.forwards < faithful.passes.forwards / 2
    # both modes run the same IG calls: 4 terms · N path images, fwd+bwd, per image and iteration
    iterations_run = (~torch.isnan(faithful.history["loss"])).sum()
    assert faithful.passes.backwards == iterations_run * 4 * 15
