"""Batches equal single calls; any channel count, aspect, mask size, score; devices; determinism."""

import pytest
import torch

import igos
from tests.igos.evidence import (
    FAST,
    METHOD_OPTIONS,
    SIZE,
    WINDOW,
    WindowEvidenceNet,
    evidence_images,
    top_fraction_inside,
    window_mask,
)


@pytest.fixture(scope="module")
def model() -> WindowEvidenceNet:
    return WindowEvidenceNet(SIZE, WINDOW).double()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return evidence_images(3, SIZE, WINDOW, seed=1)


@pytest.mark.parametrize("method, mode", [(m, "fast") for m in igos.METHODS] + [("igos++", "faithful"),
                                                                               ("igos", "faithful")])
def test_batch_equals_single_calls(model, images, method, mode):
    options = dict(METHOD_OPTIONS[method], **({"mode": mode} if method.startswith("igos") else {}))
    targets = [1, 0, 1]
    batch = igos.explain(model, images, method=method, targets=targets, mask_size=16, seed=7, **options)
    for b in range(len(images)):
        single = igos.explain(model, images[b : b + 1], method=method, targets=targets[b : b + 1], mask_size=16,
                              seed=7 + b, **options)
        torch.testing.assert_close(batch.saliency[b : b + 1], single.saliency, rtol=1e-9, atol=1e-9)
    assert batch.saliency.shape == (3, 16, 16)
    assert batch.targets.tolist() == targets


@pytest.mark.parametrize("method", ["igos++", "rise"])
def test_chunked_forwards_equal_one_big_batch(model, images, method):
    small = igos.explain(model, images, method=method, batch_size=7, **METHOD_OPTIONS[method])
    large = igos.explain(model, images, method=method, batch_size=4096, **METHOD_OPTIONS[method])
    torch.testing.assert_close(small.saliency, large.saliency, rtol=1e-9, atol=1e-9)
    assert small.passes == large.passes


def test_same_seed_same_map_other_seed_other_map(model, images):
    first = igos.explain(model, images, seed=3, **FAST).saliency
    assert torch.equal(first, igos.explain(model, images, seed=3, **FAST).saliency)
    assert not torch.equal(first, igos.explain(model, images, seed=4, **FAST).saliency)


@pytest.mark.parametrize("method", igos.METHODS)
def test_every_method_gives_a_unit_range_map_on_three_channel_non_square_float32(method):
    size, window = (48, 64), (16, 32, 16, 16)
    model = WindowEvidenceNet(size, window, channels=3)
    images = evidence_images(2, size, window, channels=3, dtype=torch.float32)
    explanation = igos.explain(model, images, method=method, mask_size=(12, 16), **METHOD_OPTIONS[method])
    assert explanation.saliency.shape == (2, 12, 16)
    assert explanation.saliency.dtype == torch.float32
    assert 0 <= explanation.saliency.min() and explanation.saliency.max() <= 1
    assert explanation.upsample().shape == (2, 48, 64)


def test_non_square_one_channel_input_finds_the_window():
    size, window = (96, 128), (32, 64, 16, 16)
    model = WindowEvidenceNet(size, window).double()
    explanation = igos.explain(model, evidence_images(2, size, window), mask_size=28, iterations=10)
    assert explanation.saliency.shape == (2, 28, 28)
    assert (top_fraction_inside(explanation.upsample(), window_mask(size, window), 0.015) >= 0.8).all()


def test_sigmoid_score_explains_a_multi_label_head(images):
    model = WindowEvidenceNet(SIZE, WINDOW).double()
    explanation = igos.explain(model, images, score="sigmoid", targets=[1, 1, 1], mask_size=16, iterations=10)
    assert (top_fraction_inside(explanation.upsample(), window_mask(SIZE, WINDOW), 0.05) >= 0.8).all()
    torch.testing.assert_close(explanation.target_scores, torch.sigmoid(model(images)[:, 1]))


def test_mask_size_7_finds_the_window_cells(model, images):
    explanation = igos.explain(model, images, mask_size=7, iterations=10)
    assert explanation.saliency.shape == (3, 7, 7)
    coarse = torch.nn.functional.adaptive_avg_pool2d(window_mask(SIZE, WINDOW)[None, None].double(), 7)[0, 0]
    top = explanation.saliency.flatten(1).argmax(dim=1)
    assert (coarse.flatten()[top] > 0.5).all()


def test_mask_size_224_at_input_resolution_uses_lambda1_10():
    size, window = (224, 224), (64, 96, 32, 32)
    model = WindowEvidenceNet(size, window).double()
    explanation = igos.explain(model, evidence_images(1, size, window), mask_size=224, iterations=2, ig_steps=2)
    assert explanation.saliency.shape == (1, 224, 224)
    assert explanation.options["l1_coeff"] == 10.0
    assert igos.explain(model, evidence_images(1, size, window), mask_size=28, iterations=1,
                        ig_steps=1).options["l1_coeff"] == 1.0


def test_model_state_is_restored(images):
    model = WindowEvidenceNet(SIZE, WINDOW).double().train()
    igos.explain(model, images, **FAST)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", igos.METHODS)
def test_cuda_follows_the_tensors_and_matches_cpu(method):
    model = WindowEvidenceNet(SIZE, WINDOW).double()
    images = evidence_images(2, SIZE, WINDOW)
    options = METHOD_OPTIONS[method]
    gpu = igos.explain(model.cuda(), images.cuda(), method=method, mask_size=16, **options)
    assert gpu.saliency.device.type == "cuda"
    cpu = igos.explain(model.cpu(), images, method=method, mask_size=16, **options)
    if method in ("mask", "gradcam", "integrated-gradients", "gradient"):  # no randomness: the same maps
        torch.testing.assert_close(gpu.saliency.cpu(), cpu.saliency, rtol=1e-6, atol=1e-6)
    elif method != "igos-insertion":  # CPU and CUDA random streams differ: compare where the maps point
        inside = window_mask(SIZE, WINDOW)
        assert (top_fraction_inside(gpu.upsample().cpu(), inside) >= 0.8).all()
        assert (top_fraction_inside(cpu.upsample(), inside) >= 0.8).all()


@pytest.mark.parametrize("method", ["igos++", "igos", "mask"])
def test_mask_methods_return_masks_and_history(model, images, method):
    explanation = igos.explain(model, images, method=method, mask_size=16, **METHOD_OPTIONS[method])
    masks = 2 if method == "igos++" else 1
    assert explanation.masks.shape == (3, masks, 16, 16)
    torch.testing.assert_close(explanation.saliency, 1 - explanation.masks.prod(dim=1))
    iterations = METHOD_OPTIONS[method]["iterations"]
    assert explanation.history["loss"].shape == explanation.history["step"].shape == (iterations, 3)
    assert torch.isfinite(explanation.history["loss"][0]).all()


def test_normalise_maps_is_min_max_per_map_and_zero_for_a_constant_map():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]], [[-2.0, 0.0], [0.0, 2.0]]])
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.5], [0.5, 1.0]]])
    torch.testing.assert_close(igos.normalise_maps(maps), expected)
