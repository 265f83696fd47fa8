"""The path quadrature: known integrals, the options that choose it, and the iGOS++ path integral converging."""

import math

import pytest
import torch

import igos
from tests.igos.evidence import SIZE, WINDOW, WindowEvidenceNet, evidence_images


@pytest.mark.parametrize("nodes", [1, 2, 3, 5])
def test_gauss_legendre_is_exact_for_polynomials_of_degree_2n_minus_1(nodes):
    alphas, weights = igos.path_nodes("gauss-legendre", nodes, dtype=torch.float64)
    for degree in range(2 * nodes):
        assert float((weights * alphas**degree).sum()) == pytest.approx(1 / (degree + 1), abs=1e-12)
    assert bool(((alphas > 0) & (alphas < 1)).all()) and bool((alphas.diff() > 0).all())


def test_riemann_is_the_published_right_sum():
    alphas, weights = igos.path_nodes("riemann", 4, dtype=torch.float64)
    assert alphas.tolist() == [0.25, 0.5, 0.75, 1.0] and weights.tolist() == [0.25] * 4
    # ∫₀¹ α² dα = 1/3; the right sum with 4 steps gives 30/64
    assert float((weights * alphas**2).sum()) == pytest.approx(30 / 64)


def test_unknown_rule_and_no_nodes_are_refused():
    with pytest.raises(ValueError, match="quadrature"):
        igos.path_nodes("simpson", 3)
    with pytest.raises(ValueError, match="at least one node"):
        igos.path_nodes("riemann", 0)


def test_modes_choose_their_rule_and_nodes():
    def resolved(**options):
        return igos.IGOSOptions(**options).resolved(full_resolution_mask=False, default_regularizer="btv")

    faithful = resolved(mode="faithful", ig_steps=10)
    assert (faithful.quadrature, faithful.ig_nodes) == ("riemann", 10)
    fast = resolved(mode="fast", ig_steps=10)
    assert (fast.quadrature, fast.ig_nodes) == ("gauss-legendre", math.ceil(10 / 4))
    assert resolved(mode="fast", ig_steps=20).ig_nodes == 5
    assert resolved(mode="fast", ig_steps=2).ig_nodes == 3  # never fewer than 3
    assert resolved(mode="fast", ig_steps=10, ig_nodes=5).ig_nodes == 5
    assert resolved(mode="fast", ig_steps=10, quadrature="riemann").ig_nodes == 10
    with pytest.raises(igos.IGOSError, match="ig_nodes applies to gauss-legendre"):
        igos.IGOSOptions(quadrature="riemann", ig_steps=10, ig_nodes=3)


def test_path_integral_converges_faster_on_gauss_legendre():
    """On a smooth model, 4 Gauss–Legendre nodes are closer to the 64-node integral than 15 Riemann steps, for the
    scores and for the integrated gradient; the explanation's passes follow the node count."""
    torch.manual_seed(0)
    model = WindowEvidenceNet(SIZE, WINDOW)
    images = evidence_images(2, SIZE, WINDOW, seed=2).float()
    masks = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))

    def error(rule: str, nodes: int) -> tuple[float, float]:
        scores, grad = igos.path_integral(model, images, masks, quadrature=rule, nodes=nodes)
        return float((scores - ref_scores).abs().max()), float((grad - ref_grad).norm() / ref_grad.norm())

    ref_scores, ref_grad = igos.path_integral(model, images, masks, quadrature="gauss-legendre", nodes=64)
    riemann, gauss = error("riemann", 15), error("gauss-legendre", 4)
    assert gauss[0] < riemann[0] / 10 and gauss[1] < riemann[1] / 10
    explanation = igos.explain(model, images, mask_size=8, iterations=1, ig_steps=16, mode="fast", early_stop=False)
    assert explanation.passes.backwards == 2 * 4 * 4  # images × terms × ⌈16/4⌉ nodes


def test_path_integral_checks_its_masks():
    model = WindowEvidenceNet(SIZE, WINDOW)
    images = evidence_images(2, SIZE, WINDOW).float()
    with pytest.raises(igos.IGOSError, match="masks must be"):
        igos.path_integral(model, images, torch.ones(2, 1, 8, 8))
