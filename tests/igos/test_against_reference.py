"""The library's fast code against the slow reference of tests/igos/reference.py (docs/igos.md §1–§7), in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from igos._composition import (
    blur_baseline,
    gaussian_blur,
    gaussian_kernel_1d,
    heavy_blur_size,
    rise_insertion_start,
    steps_for,
    upsample,
)
from igos._igos import VARIANTS, backtracking_line_search, build_regularizer
from igos._options import IGOSOptions
from igos._paths import PathProblem, Term
from igos._regularizers import btv, btv_weights, l1, tv
from igos._scoring import ScoredModel
from tests.igos import reference as ref
from tests.igos.reference import as_tensor as t
from tests.igos.reference import assert_close as close


def random_masks(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Masks strictly inside (0, 1), away from the L1 kink at 1 and the clamp."""
    return rng.uniform(0.05, 0.95, size=shape)


def smooth_images(rng: np.random.Generator, count: int, channels: int, size: tuple[int, int],
                  jitter: float = 0.03) -> np.ndarray:
    """Low-frequency images plus small noise, so the BTV colour weights (σ = 0.01) vary between 0 and 1."""
    coarse = rng.normal(0.0, 0.6, size=(count, channels, 3, 4))
    out = np.stack([np.stack([ref.upsample(coarse[b, ch], size) for ch in range(channels)]) for b in range(count)])
    return out + jitter * rng.normal(size=out.shape)


# ----------------------------------------------------------------------------------------------
# Regularisers (docs/igos.md §2.3, §2.4, §6)
# ----------------------------------------------------------------------------------------------

MASK_SHAPES = [(5, 5), (4, 7), (7, 3), (1, 6), (6, 1)]


@pytest.mark.parametrize("shape", MASK_SHAPES)
def test_l1_matches_reference(shape):
    rng = np.random.default_rng(1)
    masks = rng.uniform(0, 1, size=(3, *shape))
    close(l1(t(masks)), [ref.l1(m) for m in masks])


def test_l1_is_a_mean_of_one_minus_mask():
    mask = torch.zeros(1, 4, 6, dtype=torch.float64)
    mask[0, 0, :3] = 1.0  # 3 cells at 1, 21 cells at 0 -> 21/24
    close(l1(mask), [21 / 24])


@pytest.mark.parametrize("shape", MASK_SHAPES)
@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_tv_matches_reference(shape, beta):
    rng = np.random.default_rng(2)
    masks = rng.uniform(0, 1, size=(3, *shape))
    close(tv(t(masks), beta), [ref.tv(m, beta) for m in masks])


def test_tv_known_answer():
    # vertical pairs: |0-1|^2 over 2 pairs -> mean 1 ... (2 columns, 1 pair each): both differ by 1 -> TV_v = 1
    # horizontal pairs: row 0 (0,0) -> 0, row 1 (1,1) -> 0 -> TV_h = 0
    mask = t([[[0.0, 0.0], [1.0, 1.0]]])
    close(tv(mask), [1.0])
    close(ref.tv(mask[0].numpy()), 1.0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_btv_weights_match_reference(channels, symmetric, sigma):
    rng = np.random.default_rng(3)
    images = smooth_images(rng, 2, channels, (9, 11))
    w_v, w_h = btv_weights(t(images), sigma, symmetric=symmetric)
    for b in range(2):
        ref_v, ref_h = ref.btv_weights(images[b], sigma, symmetric)
        assert 0.05 < ref_v.mean() < 0.95  # the inputs exercise the kernel, not only its tails
        close(w_v[b], ref_v)
        close(w_h[b], ref_h)


def test_btv_weight_forms_coincide_for_one_channel_and_differ_for_three():
    rng = np.random.default_rng(4)
    gray = smooth_images(rng, 1, 1, (6, 7))[0]
    close(ref.btv_weights(gray, symmetric=False)[0], ref.btv_weights(gray, symmetric=True)[0])
    colour = smooth_images(rng, 1, 3, (6, 7))[0]
    official, symmetric = ref.btv_weights(colour)[0], ref.btv_weights(colour, symmetric=True)[0]
    assert np.abs(official - symmetric).max() > 1e-3
    # the horizontal weights are the same per-channel average in both forms
    close(ref.btv_weights(colour)[1], ref.btv_weights(colour, symmetric=True)[1])


def test_btv_weight_kernel_has_no_factor_two():
    # one step of 0.05 in one channel of a grey image: w = exp(-0.05^2 / 0.01) = exp(-0.25)
    image = torch.zeros(1, 1, 2, 1, dtype=torch.float64)
    image[0, 0, 1, 0] = 0.05
    w_v, _ = btv_weights(image, 0.01)
    close(w_v, [[[np.exp(-0.25)]]])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("mask_shape", [(4, 4), (3, 5), (9, 11), (1, 4)])
def test_btv_matches_reference(channels, symmetric, mask_shape):
    rng = np.random.default_rng(5)
    images = smooth_images(rng, 2, channels, (9, 11))
    masks = rng.uniform(0, 1, size=(2, *mask_shape))
    got = btv(t(masks), btv_weights(t(images), 0.01, symmetric=symmetric))
    close(got, [ref.btv(images[b], masks[b], 0.01, 2.0, symmetric) for b in range(2)])


@pytest.mark.parametrize("kind", ["btv", "tv"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_regularizer_on_product_matches_reference(kind, symmetric):
    rng = np.random.default_rng(6)
    images = smooth_images(rng, 2, 3, (8, 10))
    masks = random_masks(rng, 3, 2, 4, 5)
    rows = [1, 0, 1]
    options = IGOSOptions(l1_coeff=1.7, tv_coeff=20.0, regularizer=kind, symmetric_btv=symmetric)
    got = build_regularizer(t(images), options)(t(masks), torch.tensor(rows))
    expected = [ref.regularizer(kind, images[b], masks[r, 0] * masks[r, 1], 1.7, 20.0, 0.01, 2.0, symmetric)
                for r, b in enumerate(rows)]
    close(got, expected)


def test_reference_regularizer_gradients_match_finite_differences():
    """The analytic reference gradients themselves, against central differences of the reference values."""
    rng = np.random.default_rng(7)
    image = smooth_images(rng, 1, 3, (6, 7))[0]
    mask = random_masks(rng, 3, 4)
    for value, grad in [
        (lambda m: ref.l1(m), ref.l1_grad),
        (lambda m: ref.tv(m, 2.0), lambda m: ref.tv_grad(m, 2.0)),
        (lambda m: ref.tv(m, 3.0), lambda m: ref.tv_grad(m, 3.0)),
        (lambda m: ref.btv(image, m), lambda m: ref.btv_grad(image, m)),
        (lambda m: ref.btv(image, m, symmetric=True), lambda m: ref.btv_grad(image, m, symmetric=True)),
    ]:
        numeric = np.zeros_like(mask)
        for i in range(mask.shape[0]):
            for j in range(mask.shape[1]):
                step = np.zeros_like(mask)
                step[i, j] = 1e-6
                numeric[i, j] = (value(mask + step) - value(mask - step)) / 2e-6
        close(grad(mask), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(4, 4), (3, 6)])
def test_gradcheck_l1_tv_btv(shape):
    rng = np.random.default_rng(8)
    mask = t(random_masks(rng, 2, *shape)).requires_grad_(True)  # away from m = 1
    assert torch.autograd.gradcheck(l1, (mask,))
    assert torch.autograd.gradcheck(lambda m: tv(m, 2.0), (mask,))
    assert torch.autograd.gradcheck(lambda m: tv(m, 3.0), (mask,))
    images = t(smooth_images(rng, 2, 3, (7, 9)))
    for symmetric in (False, True):
        weights = btv_weights(images, 0.01, symmetric=symmetric)
        assert torch.autograd.gradcheck(lambda m, weights=weights: btv(m, weights), (mask,))


# ----------------------------------------------------------------------------------------------
# U (docs/igos.md §1)
# ----------------------------------------------------------------------------------------------

UPSAMPLE_CASES = [(3, 4, 12, 16), (5, 5, 10, 10), (2, 3, 9, 5), (1, 4, 6, 8), (7, 7, 224, 224), (6, 6, 6, 6)]


@pytest.mark.parametrize("h, w, out_h, out_w", UPSAMPLE_CASES)
def test_upsample_and_adjoint_match_weight_matrix(h, w, out_h, out_w):
    H, W = out_h, out_w
    rng = np.random.default_rng(9)
    masks = rng.uniform(0, 1, size=(2, h, w))
    matrix = ref.upsample_matrix(h, w, H, W)
    leaf = t(masks).requires_grad_(True)
    up = upsample(leaf, (H, W))
    close(up, np.stack([(matrix @ m.ravel()).reshape(H, W) for m in masks]))
    cotangent = rng.normal(size=(2, H, W))
    up.backward(t(cotangent))
    close(leaf.grad, np.stack([(matrix.T @ g.ravel()).reshape(h, w) for g in cotangent]))


def test_upsample_known_answers():
    # identity at s = H; corners are aligned; 2 -> 3 puts the midpoint in the middle
    close(ref.upsample_matrix(4, 5, 4, 5), np.eye(20))
    mask = t([[[0.0, 1.0], [2.0, 4.0]]])
    close(upsample(mask, (3, 3)), [[[0.0, 0.5, 1.0], [1.0, 1.75, 2.5], [2.0, 3.0, 4.0]]])
    rng = np.random.default_rng(10)
    m = t(rng.uniform(size=(1, 3, 5)))
    up = upsample(m, (11, 17))
    close(up[0, [0, 0, -1, -1], [0, -1, 0, -1]], m[0, [0, 0, -1, -1], [0, -1, 0, -1]])
    same = t(rng.uniform(size=(1, 6, 7)))
    close(upsample(same, (6, 7)), same)


# ----------------------------------------------------------------------------------------------
# Blur (docs/igos.md §5.2, §7.3)
# ----------------------------------------------------------------------------------------------

BLUR_CASES = [((1, 12, 16), 5, 1.5), ((3, 10, 10), 11, 5.0), ((2, 4, 5), 11, 5.0), ((1, 12, 16), 51, 50.0),
              ((1, 1, 6), 3, 1.0)]


@pytest.mark.parametrize("shape, size, sigma", BLUR_CASES)
def test_reference_blur_matches_scipy(shape, size, sigma):
    rng = np.random.default_rng(11)
    image = rng.normal(size=shape)
    kernel = ref.gaussian_kernel(size, sigma)
    mirror = np.stack([ndimage.correlate(c, kernel, mode="mirror") for c in image])
    constant = np.stack([ndimage.correlate(c, kernel, mode="constant", cval=0.0) for c in image])
    close(ref.blur(image, kernel, "reflect101"), mirror)
    close(ref.blur(image, kernel, "zeros"), constant)


@pytest.mark.parametrize("shape, size, sigma", BLUR_CASES)
@pytest.mark.parametrize("border", ["reflect101", "zeros"])
def test_library_blur_matches_reference(shape, size, sigma, border):
    rng = np.random.default_rng(12)
    images = rng.normal(size=(2, *shape))
    got = gaussian_blur(t(images), size, sigma, border=border)
    kernel = ref.gaussian_kernel(size, sigma)
    close(got, np.stack([ref.blur(image, kernel, border) for image in images]))


def test_gaussian_taps_match_reference_and_spec_numbers():
    for size, sigma in [(51, 50.0), (11, 5.0), (5, 1.5)]:
        close(gaussian_kernel_1d(size, sigma, dtype=torch.float64, device=torch.device("cpu")),
              ref.gaussian_taps(size, sigma))
    taps = ref.gaussian_taps(51, 50.0)
    assert round(taps[0] / taps[25], 2) == 0.88  # docs/igos.md §5.2: nearly a box, edge/centre 0.88


def test_heavy_blur_size_at_the_spec_resolutions():
    assert heavy_blur_size(224, 224) == (51, 50.0)
    assert heavy_blur_size(500, 640) == (151, 150.0)
    assert heavy_blur_size(800, 600) == (201, 200.0)


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (2, 1, 12, 16)])
def test_blur_baseline_is_reflect101_gaussian(shape):
    rng = np.random.default_rng(13)
    images = rng.normal(size=shape)
    size, sigma = heavy_blur_size(*shape[-2:])
    kernel = ref.gaussian_kernel(size, sigma)
    close(blur_baseline(t(images)), np.stack([ref.blur(image, kernel, "reflect101") for image in images]))


def test_reference_rise_kernel_has_the_spec_numbers():
    kernel = ref.rise_kernel()
    assert kernel.shape == (11, 11)
    close(kernel.sum(), 1.0)
    assert round(kernel[5, 5], 4) == 0.0088 and round(kernel[0, 0], 4) == 0.0077
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    close(kernel, ndimage.gaussian_filter(delta, 5.0))  # the construction RISE describes


def test_rise_insertion_kernel_has_the_spec_numbers():
    """docs/igos.md §7.3: the RISE insertion blur is nearly flat, centre 0.0088 and corner 0.0077, sum 1."""
    delta = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    delta[0, 0, 10, 10] = 1.0
    kernel = rise_insertion_start(delta)[0, 0, 5:16, 5:16].numpy()  # zero padding: the kernel itself
    close(kernel.sum(), 1.0)
    np.testing.assert_allclose([kernel[5, 5], kernel[0, 0]], [0.0088, 0.0077], atol=5e-5)


@pytest.mark.parametrize("shape", [(1, 3, 10, 10), (1, 1, 12, 16)])
def test_rise_insertion_start_matches_reference(shape):
    rng = np.random.default_rng(14)
    images = rng.normal(size=shape)
    close(rise_insertion_start(t(images)), np.stack([ref.blur(image, ref.rise_kernel(), "zeros") for image in images]))


# ----------------------------------------------------------------------------------------------
# Path scores and integrated gradients (docs/igos.md §2.1, §3)
# ----------------------------------------------------------------------------------------------

PROBLEMS = [  # channels, input size, mask size, IG steps, scorer batch size
    (1, (12, 16), (3, 4), 3, 5),
    (3, (10, 10), (5, 5), 2, 64),
    (3, (10, 10), (10, 10), 2, 7),
]


def setting(channels: int, size: tuple[int, int], seed: int = 0) -> tuple[ref.TinyNet, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    model = ref.TinyNet(channels, seed=seed)
    images = smooth_images(rng, 2, channels, size)
    baselines = np.stack([ref.blur(image, ref.gaussian_kernel(5, 2.0), "reflect101") for image in images])
    return model, images, baselines


@pytest.mark.parametrize("channels, size, mask_size, steps, batch", PROBLEMS)
@pytest.mark.parametrize("with_noise", [True, False])
def test_path_scores_and_their_gradients_match_reference(channels, size, mask_size, steps, batch, with_noise):
    model, images, baselines = setting(channels, size)
    rng = np.random.default_rng(15)
    terms = (Term("deletion", (0, 1), 1.0), Term("insertion", (0, 1), -1.0), Term("deletion", (0,), 1.0),
             Term("insertion", (1,), -1.0), Term("insertion", (0,), 1.0))
    targets = [1, 3]
    problem = PathProblem(ScoredModel(model, "softmax", batch), t(images), t(baselines), torch.tensor(targets),
                          terms, n_masks=2, ig_steps=steps, noise_std=0.2)
    rows = [1, 0, 1]
    masks = random_masks(rng, len(rows), 2, *mask_size)
    noise = 0.2 * rng.normal(size=(len(rows), len(terms) * steps, channels, *size)) if with_noise else None
    weights = np.array([0.7, -1.3, 0.4, 2.0, -0.6])
    leaf = t(masks).requires_grad_(True)
    got = problem.scores(torch.tensor(rows), leaf, None if noise is None else t(noise), grad_weights=t(weights))

    expected_scores = np.zeros((len(rows), len(terms)))
    expected_grad = np.zeros_like(masks)
    for r, b in enumerate(rows):
        for k, term in enumerate(terms):
            eps = np.zeros((steps, channels, *size)) if noise is None else noise[r, k * steps : (k + 1) * steps]
            u = np.prod([ref.upsample(masks[r, j], size) for j in term.masks], axis=0)
            expected_scores[r, k] = ref.path_score(model, images[b], baselines[b], targets[b], term.view, u, eps)
            grads = ref.integrated_gradients(model, images[b], baselines[b], targets[b], term.view,
                                             [masks[r, j] for j in term.masks], eps)
            for j, g in zip(term.masks, grads, strict=True):
                expected_grad[r, j] += weights[k] * g
    close(got, expected_scores)
    close(leaf.grad, expected_grad)
    # without grad_weights: the same scores, nothing backpropagated
    plain = t(masks).requires_grad_(True)
    close(problem.scores(torch.tensor(rows), plain, None if noise is None else t(noise)), expected_scores)
    assert plain.grad is None


def test_path_score_known_answer_on_linear_logits():
    """A model with logits (x_mean, 0): S_del at u = 1 without noise is mean_k σ(mean(B + α_k (I − B)))."""

    class MeanModel(torch.nn.Module):
        def forward(self, x):
            mean = x.mean(dim=(1, 2, 3))
            return torch.stack([mean, torch.zeros_like(mean)], dim=1)

    image = torch.full((1, 1, 4, 4), 2.0, dtype=torch.float64)
    baseline = torch.zeros_like(image)
    problem = PathProblem(ScoredModel(MeanModel()), image, baseline, torch.tensor([0]),
                          (Term("deletion", (0,), 1.0), Term("insertion", (0,), -1.0)), 1, 4, 0.0)
    got = problem.scores(torch.tensor([0]), torch.ones(1, 1, 2, 2, dtype=torch.float64), None)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    # deletion: x_k = α_k·2 -> σ(2α_k); insertion: x_k = 2·(1 − α_k) -> σ(2(1 − α_k)), α_k = k/4
    close(got, [[np.mean([sigmoid(2 * k / 4) for k in range(1, 5)]), np.mean([sigmoid(2 - 2 * k / 4)
                                                                             for k in range(1, 5)])]])


def test_draw_noise_has_spec_std_and_is_fresh_per_path_image():
    model, images, baselines = setting(3, (10, 10))
    problem = PathProblem(ScoredModel(model), t(images), t(baselines), torch.tensor([0, 1]),
                          VARIANTS["igos++"].terms, 2, 15, 0.2)
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    noise = problem.draw_noise(torch.tensor([0, 1]), generators)
    assert noise.shape == (2, 4 * 15, 3, 10, 10)
    assert abs(noise.std().item() - 0.2) < 0.005 and abs(noise.mean().item()) < 0.005
    assert not torch.equal(noise[0, 0], noise[0, 1]) and not torch.equal(noise[0], noise[1])
    again = problem.draw_noise(torch.tensor([0]), generators)
    assert not torch.equal(again[0], noise[0])


# ----------------------------------------------------------------------------------------------
# Objectives and directions of the variants (docs/igos.md §2.2, §3, §6)
# ----------------------------------------------------------------------------------------------


def library_objective_and_direction(name: str, model, images, baselines, targets, masks, noise, options,
                                    rows) -> tuple[torch.Tensor, torch.Tensor]:
    """What one iteration of `optimize_masks` computes: L (no ½) and the direction g (with ½ if any)."""
    variant = VARIANTS[name]
    steps = noise.shape[1] // len(variant.terms)
    resolved = options.resolved(full_resolution_mask=False, default_regularizer=variant.regularizer)
    problem = PathProblem(ScoredModel(model, "softmax", 16), t(images), t(baselines), torch.tensor(targets),
                          variant.terms, variant.n_masks, steps, 0.2)
    regularizer = build_regularizer(t(images), resolved)
    rows = torch.tensor(rows)
    with torch.no_grad():
        objective = (problem.scores(rows, t(masks), t(noise)) * problem.signs).sum(dim=1) + regularizer(t(masks), rows)
    leaf = t(masks).requires_grad_(True)
    problem.scores(rows, leaf, t(noise), grad_weights=problem.signs * variant.direction_scale)
    regularizer(leaf, rows).sum().backward()
    return objective, leaf.grad


def library_noise(name: str, calls: dict[str, tuple[str, tuple[int, ...]]], noise: list[dict[str, np.ndarray]]
                  ) -> np.ndarray:
    """Stack the reference's per-call noise in the order of the variant's terms (matched by view and masks)."""
    by_term = {(view, masks): key for key, (view, masks) in calls.items()}
    keys = [by_term[(term.view, term.masks)] for term in VARIANTS[name].terms]
    assert sorted(keys) == sorted(calls)  # every term of docs/igos.md §3's table, once
    return np.stack([np.concatenate([row[key] for key in keys]) for row in noise])


@pytest.mark.parametrize("channels, size, mask_size", [(1, (12, 16), (3, 4)), (3, (10, 10), (4, 4)),
                                                        (3, (10, 10), (10, 10))])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("coefficients", [(1.3, 20.0), (0.0, 0.0)])
def test_igos_pp_objective_and_directions_match_reference(channels, size, mask_size, symmetric, coefficients):
    model, images, baselines = setting(channels, size, seed=1)
    rng = np.random.default_rng(16)
    steps, rows, targets = 3, [0, 1], [2, 0]
    masks = random_masks(rng, len(rows), 2, *mask_size)
    noise = [{key: 0.2 * rng.normal(size=(steps, channels, *size)) for key in ref.IGOS_PP_CALLS} for _ in rows]
    l1_coeff, tv_coeff = coefficients
    options = IGOSOptions(l1_coeff=l1_coeff, tv_coeff=tv_coeff, symmetric_btv=symmetric)
    objective, direction = library_objective_and_direction(
        "igos++", model, images, baselines, targets, masks, library_noise("igos++", ref.IGOS_PP_CALLS, noise),
        options, rows)
    for r, b in enumerate(rows):
        args = (model, images[b], baselines[b], targets[b], masks[r, 0], masks[r, 1], noise[r], l1_coeff, tv_coeff,
                0.01, 2.0, symmetric)
        close(objective[r], ref.igos_pp_objective(*args))
        g_d, g_i = ref.igos_pp_directions(*args)
        close(direction[r, 0], g_d)
        close(direction[r, 1], g_i)


@pytest.mark.parametrize("channels, size, mask_size", [(1, (12, 16), (3, 4)), (3, (10, 10), (5, 5))])
def test_igos_objective_and_direction_match_reference(channels, size, mask_size):
    model, images, baselines = setting(channels, size, seed=2)
    rng = np.random.default_rng(17)
    steps, rows, targets = 4, [1, 0], [4, 1]
    masks = random_masks(rng, len(rows), 1, *mask_size)
    noise = [{"del": 0.2 * rng.normal(size=(steps, channels, *size))} for _ in rows]
    options = IGOSOptions(l1_coeff=1.0, tv_coeff=20.0)
    objective, direction = library_objective_and_direction(
        "igos", model, images, baselines, targets, masks, library_noise("igos", {"del": ("deletion", (0,))}, noise),
        options, rows)
    for r, b in enumerate(rows):
        args = (model, images[b], baselines[b], targets[b], masks[r, 0], noise[r]["del"], 1.0, 20.0)
        close(objective[r], ref.igos_objective(*args))
        close(direction[r, 0], ref.igos_direction(*args))


def test_igos_plus_and_insertion_ablation_match_reference():
    model, images, baselines = setting(3, (10, 10), seed=3)
    rng = np.random.default_rng(18)
    steps, rows, targets = 3, [0, 1], [0, 3]
    masks = random_masks(rng, len(rows), 1, 5, 5)
    noise = [{"del": 0.2 * rng.normal(size=(steps, 3, 10, 10)), "ins": 0.2 * rng.normal(size=(steps, 3, 10, 10))}
             for _ in rows]
    calls = {"del": ("deletion", (0,)), "ins": ("insertion", (0,))}
    options = IGOSOptions(l1_coeff=1.0, tv_coeff=20.0)
    objective, direction = library_objective_and_direction(
        "igos+", model, images, baselines, targets, masks, library_noise("igos+", calls, noise), options, rows)
    for r, b in enumerate(rows):
        args = (model, images[b], baselines[b], targets[b], masks[r, 0], noise[r], 1.0, 20.0)
        close(objective[r], ref.igos_plus_objective(*args))
        close(direction[r, 0], ref.igos_plus_direction(*args))

    # "Insertion" ablation (docs/igos.md §6): I-GOS with the deletion loss replaced by −S_ins
    objective, direction = library_objective_and_direction(
        "igos-insertion", model, images, baselines, targets, masks,
        library_noise("igos-insertion", {"ins": ("insertion", (0,))}, noise), options, rows)
    for r, b in enumerate(rows):
        image, baseline, mask, eps = images[b], baselines[b], masks[r, 0], noise[r]["ins"]
        u = ref.upsample(mask, (10, 10))
        expected = (-ref.path_score(model, image, baseline, targets[b], "insertion", u, eps)
                    + ref.regularizer("tv", image, mask, 1.0, 20.0))
        (g_ins,) = ref.integrated_gradients(model, image, baseline, targets[b], "insertion", [mask], eps)
        close(objective[r], expected)
        close(direction[r, 0], -g_ins + ref.regularizer_grad("tv", image, mask, 1.0, 20.0))


def test_igos_pp_direction_is_not_the_gradient_of_its_objective():
    """docs/igos.md §3: the ½ sits only on the network terms of the direction, so g ≠ ∇L (with λ = 0: g = ½∇L)."""
    model, images, baselines = setting(3, (10, 10), seed=4)
    rng = np.random.default_rng(19)
    masks = random_masks(rng, 1, 2, 4, 4)
    noise = [{key: 0.2 * rng.normal(size=(2, 3, 10, 10)) for key in ref.IGOS_PP_CALLS}]
    options = IGOSOptions(l1_coeff=0.0, tv_coeff=0.0)
    stacked = library_noise("igos++", ref.IGOS_PP_CALLS, noise)
    _, direction = library_objective_and_direction("igos++", model, images, baselines, [1], masks, stacked,
                                                   options, [0])
    leaf = t(masks).requires_grad_(True)
    problem = PathProblem(ScoredModel(model), t(images), t(baselines), torch.tensor([1, 1]),
                          VARIANTS["igos++"].terms, 2, 2, 0.2)
    problem.scores(torch.tensor([0]), leaf, t(stacked), grad_weights=problem.signs)
    close(direction, 0.5 * leaf.grad.numpy())


# ----------------------------------------------------------------------------------------------
# Line search (docs/igos.md §4.1) and defaults (§5.1)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("parallel_trials", [1, 3, 13])
def test_line_search_matches_reference(parallel_trials):
    rng = np.random.default_rng(20)
    masks = rng.uniform(0.2, 0.8, size=(4, 2, 3, 3))
    direction = rng.normal(size=masks.shape) * np.array([1.0, 1e-3, 1.0, 0.0])[:, None, None, None]
    centres = [rng.uniform(0, 1, size=masks.shape[1:]) for _ in range(4)]
    objectives = [
        lambda m, c=centres[0]: float(((m - c) ** 2).sum()),
        lambda m, c=centres[1]: float(((m - c) ** 2).sum()),
        lambda m: 1.0,  # never decreases: the floor is taken
        lambda m, c=centres[3]: float(((m - c) ** 2).sum()),  # g = 0: the first trial passes
    ]
    bases = [float(((masks[0] - centres[0]) ** 2).sum()), float(((masks[1] - centres[1]) ** 2).sum()), 0.5,
             float(((masks[3] - centres[3]) ** 2).sum())]
    calls = []

    def evaluate(local, candidate):
        calls.extend(local.tolist())
        return t([objectives[i](c.numpy()) for i, c in zip(local.tolist(), candidate, strict=True)])

    options = IGOSOptions(parallel_trials=parallel_trials)
    got = backtracking_line_search(evaluate, t(masks), t(direction), t(bases), torch.full((4,), 1000.0,
                                                                                            dtype=torch.float64),
                                   options)
    expected = [ref.line_search(objectives[i], masks[i], direction[i], bases[i]) for i in range(4)]
    close(got, expected, rtol=1e-12, atol=0)
    close(got[2], 1000 * 0.2**12)  # docs/igos.md §4.1: the last trial, 4.096e-6, is applied even if it fails
    close(got[3], 1000.0)
    if parallel_trials == 1:
        assert calls.count(2) == 13  # 13 trials (plus the base: 14 evaluations of L)


def test_defaults_follow_spec_section_5():
    options = IGOSOptions()
    assert (options.iterations, options.ig_steps) == (20, 15)
    assert (options.tv_coeff, options.noise_std, options.init_step) == (20.0, 0.2, 1000.0)
    assert (options.armijo_c, options.step_shrink, options.min_step) == (1e-4, 0.2, 1e-5)
    assert (options.btv_sigma, options.btv_beta, options.symmetric_btv) == (0.01, 2.0, False)
    assert options.resolved(full_resolution_mask=False, default_regularizer="btv").l1_coeff == 1.0
    assert options.resolved(full_resolution_mask=True, default_regularizer="btv").l1_coeff == 10.0
    faithful = IGOSOptions(mode="faithful").resolved(full_resolution_mask=False, default_regularizer="btv")
    assert not (faithful.common_noise or faithful.reuse_base_loss or faithful.warm_start or faithful.early_stop)
    assert VARIANTS["igos++"].direction_scale == 0.5 and VARIANTS["igos++"].regularizer == "btv"
    assert VARIANTS["igos"].direction_scale == 1.0 and VARIANTS["igos"].regularizer == "tv"


# ----------------------------------------------------------------------------------------------
# Metric step table (docs/igos.md §7.1)
# ----------------------------------------------------------------------------------------------

SPEC_TABLE = {7: (49, 1, 49, 1), 14: (196, 3, 66, 1), 28: (784, 15, 53, 4), 224: (50176, 1003, 51, 26)}


@pytest.mark.parametrize("s", sorted(SPEC_TABLE))
def test_step_table(s):
    cells, q, n, r = SPEC_TABLE[s]
    assert s * s == cells
    assert ref.step_rule(cells) == (q, n, r)
    per_step, n_steps = steps_for(cells, None)
    assert (per_step, n_steps, cells - (n_steps - 1) * per_step) == (q, n, r)
