"""Bad input and numerical edge cases: clear errors or documented finite results, never NaN maps."""

import pytest
import torch
from torch import nn

import igos
from tests.igos.evidence import WindowEvidenceNet, evidence_images

SIZE = (32, 32)
WINDOW = (8, 16, 8, 8)
QUICK = {"iterations": 3, "ig_steps": 3}


class NaNNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 2), float("nan"), dtype=x.dtype)


class NaNWhenPerturbed(WindowEvidenceNet):
    """Finite on the clean images, NaN once the input is changed (e.g. a composed path image)."""

    def __init__(self, clean: torch.Tensor) -> None:
        super().__init__(SIZE, WINDOW)
        self.clean = clean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        clean = len(x) == len(self.clean) and torch.equal(x, self.clean)
        return logits if clean else logits * float("nan")


@pytest.fixture
def images() -> torch.Tensor:
    return evidence_images(2, SIZE, WINDOW)


@pytest.fixture
def model() -> WindowEvidenceNet:
    return WindowEvidenceNet(SIZE, WINDOW).double()


def test_model_returning_nan_is_a_clear_error(images):
    with pytest.raises(igos.NonFiniteError, match="NaN or infinite logits"):
        igos.explain(NaNNet(), images)
    with pytest.raises(igos.NonFiniteError):
        igos.insertion_deletion(NaNNet(), images, torch.rand(2, 4, 4, dtype=torch.float64))


def test_model_turning_nan_during_the_optimisation_is_a_clear_error(images):
    with pytest.raises(igos.NonFiniteError):
        igos.explain(NaNWhenPerturbed(images).double(), images, **QUICK)


def test_target_with_vanishing_probability_warns_and_gives_a_finite_map(model, images):
    strong = WindowEvidenceNet(SIZE, WINDOW, gain=200.0).double()  # class 0 has probability ~e^-80
    with pytest.warns(RuntimeWarning, match="target score is below"):
        explanation = igos.explain(strong, images, targets=[0, 0], **QUICK)
    assert torch.isfinite(explanation.saliency).all()
    assert (explanation.target_scores < 1e-6).all()


def test_constant_image_gives_a_zero_map(model):
    # the baseline equals the image (up to rounding), so no mask can change the score
    constant = torch.full((1, 1, *SIZE), 0.5, dtype=torch.float64)
    for method in ("igos++", "igos", "mask"):
        explanation = igos.explain(model, constant, method=method, iterations=3)
        assert explanation.saliency.abs().max() < 1e-9, method


@pytest.mark.parametrize("call, message", [
    (lambda m, x: igos.explain(m, x, method="lime"), "unknown method"),
    (lambda m, x: igos.explain(m, x, iterationz=3), "unknown option"),
    (lambda m, x: igos.explain(m, x, method="gradient", iterations=3), "unknown option"),
    (lambda m, x: igos.explain(m, x, iterations=0), "iterations must be >= 1"),
    (lambda m, x: igos.explain(m, x, noise_std=-1.0), "noise_std"),
    (lambda m, x: igos.explain(m, x, mode="turbo"), "mode must be"),
    (lambda m, x: igos.explain(m, x, mask_size=64), "mask_size"),
    (lambda m, x: igos.explain(m, x, mask_size=(0, 4)), "mask_size"),
    (lambda m, x: igos.explain(m, x, targets=[1]), "one class per image"),
    (lambda m, x: igos.explain(m, x, targets=[1, 5]), "outside"),
    (lambda m, x: igos.explain(m, x, seed=[1, 2, 3]), "one seed per image"),
    (lambda m, x: igos.explain(m, x, score="probit"), "score must be"),
    (lambda m, x: igos.explain(m, x, batch_size=0), "batch_size"),
    (lambda m, x: igos.explain(m, x[0]), r"\(B, C, H, W\)"),
    (lambda m, x: igos.explain(m, (x * 255).to(torch.uint8)), "floating point"),
    (lambda m, x: igos.explain(m, x, baseline=torch.zeros(3, 5, 5, dtype=x.dtype)), "baseline"),
    (lambda m, x: igos.explain(m, x, reuse_base_loss=True, common_noise=False), "needs common_noise"),
    (lambda m, x: igos.insertion_deletion(m, x, torch.rand(3, 4, 4)), "saliency must be"),
    (lambda m, x: igos.insertion_deletion(m, x, torch.rand(2, 4, 4), protocol="lime"), "protocol"),
])
def test_bad_arguments_are_rejected_before_any_work(model, images, call, message):
    with pytest.raises(igos.IGOSError, match=message):
        call(model, images)


def test_nan_image_is_rejected(model, images):
    broken = images.clone()
    broken[0, 0, 0, 0] = float("nan")
    with pytest.raises(igos.NonFiniteError, match="images contain NaN"):
        igos.explain(model, broken)


def test_gradcam_without_convolution_needs_a_layer(images):
    flat = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 2)).double()
    with pytest.raises(igos.IGOSError, match="target_layer"):
        igos.explain(flat, images, method="gradcam")
