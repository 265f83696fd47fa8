"""precision="bf16" and channels_last: validated, applied to the model's forward only, maps close to fp32."""

import pytest
import torch
from torch import Tensor, nn

import igos
from tests.igos.evidence import FAST, METHOD_OPTIONS, SIZE, WINDOW, WindowEvidenceNet, evidence_images

# Largest |Δ saliency| bf16 vs fp32 allowed on the evidence model (measured on CPU: at most 0.011, I-GOS, on the
# Riemann sum). On fast mode's 3-node Gauss–Legendre rule a line-search decision that bf16 rounding flips moves
# single cells by up to 0.1 (measured: 0.096, iGOS+; mean 0.0024), so there the mean is bounded.
BF16_TOLERANCE = 0.05
BF16_MEAN_TOLERANCE = 0.005
IGOS_FAMILY = ("igos++", "igos+", "igos", "igos-insertion")


class InputRecorder:
    """Forward hook on a layer: the dtype of its output and the memory format of its input, per call."""

    def __init__(self, layer: nn.Module) -> None:
        self.output_dtypes: set[torch.dtype] = set()
        self.channels_last_inputs: set[bool] = set()
        self.handle = layer.register_forward_hook(self)

    def __call__(self, _module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.output_dtypes.add(output.dtype)
        self.channels_last_inputs.add(inputs[0].is_contiguous(memory_format=torch.channels_last)
                                      and not inputs[0].is_contiguous())


@pytest.fixture(scope="module")
def model() -> WindowEvidenceNet:
    return WindowEvidenceNet(SIZE, WINDOW, channels=3)


@pytest.fixture(scope="module")
def images() -> Tensor:
    return evidence_images(3, SIZE, WINDOW, channels=3, seed=1).float()


def explain_recorded(model: nn.Module, images: Tensor, method: str, **kwargs: object
                     ) -> tuple[igos.Explanation, InputRecorder]:
    """explain() with a recorder on the model's convolution (removed afterwards)."""
    recorder = InputRecorder(model.conv)
    try:
        return igos.explain(model, images, method=method, mask_size=16, seed=3, **METHOD_OPTIONS[method],
                            **kwargs), recorder
    finally:
        recorder.handle.remove()


@pytest.mark.parametrize("method", igos.METHODS)
def test_bf16_autocasts_the_forward_and_gives_maps_close_to_fp32(model, images, method):
    reference, fp32_calls = explain_recorded(model, images, method)
    bf16, bf16_calls = explain_recorded(model, images, method, precision="bf16")
    assert fp32_calls.output_dtypes == {torch.float32}
    assert bf16_calls.output_dtypes == {torch.bfloat16}
    assert bf16.saliency.dtype == bf16.target_scores.dtype == torch.float32
    if bf16.masks is not None:
        assert bf16.masks.dtype == bf16.history["loss"].dtype == torch.float32
    difference = (bf16.saliency - reference.saliency).abs()
    if method in IGOS_FAMILY:
        assert difference.mean() < BF16_MEAN_TOLERANCE
        riemann, _ = explain_recorded(model, images, method, quadrature="riemann")
        riemann_bf16, _ = explain_recorded(model, images, method, quadrature="riemann", precision="bf16")
        difference = (riemann_bf16.saliency - riemann.saliency).abs()
    assert difference.max() < BF16_TOLERANCE


@pytest.mark.parametrize("method", ["igos++", "gradcam", "rise"])
def test_channels_last_feeds_channels_last_inputs_and_keeps_the_maps(model, images, method):
    reference, contiguous_calls = explain_recorded(model, images, method)
    converted, channels_last_calls = explain_recorded(model, images, method, channels_last=True)
    assert contiguous_calls.channels_last_inputs == {False}
    assert channels_last_calls.channels_last_inputs == {True}
    torch.testing.assert_close(converted.saliency, reference.saliency, rtol=1e-5, atol=1e-5)
    assert converted.passes == reference.passes


def test_bf16_channels_last_model_and_inputs_together(model, images):
    reference = igos.explain(model, images, **FAST)
    converted = WindowEvidenceNet(SIZE, WINDOW, channels=3).to(memory_format=torch.channels_last)
    both = igos.explain(converted, images, precision="bf16", channels_last=True, **FAST)
    assert (both.saliency - reference.saliency).abs().max() < BF16_TOLERANCE


def test_insertion_deletion_in_bf16_is_close_to_fp32(model, images):
    saliency = igos.explain(model, images, **FAST).saliency
    reference = igos.insertion_deletion(model, images, saliency)
    bf16 = igos.insertion_deletion(model, images, saliency, precision="bf16", channels_last=True)
    torch.testing.assert_close(bf16.insertion, reference.insertion, rtol=0, atol=0.01)
    torch.testing.assert_close(bf16.deletion, reference.deletion, rtol=0, atol=0.01)
    assert bf16.insertion_curve.dtype == torch.float32


@pytest.mark.parametrize("call, message", [
    (lambda m, x: igos.explain(m, x, precision="fp16"), "precision must be one of"),
    (lambda m, x: igos.explain(m, x, precision=None), "precision must be one of"),
    (lambda m, x: igos.explain(m, x, method="gradcam", precision="bfloat16"), "precision must be one of"),
    (lambda m, x: igos.explain(m, x, channels_last="yes"), "channels_last must be True or False"),
    (lambda m, x: igos.explain(m.double(), x.double(), precision="bf16"), "images must be float32"),
    (lambda m, x: igos.insertion_deletion(m, x, torch.rand(3, 4, 4), precision="tf32"), "precision must be one of"),
])
def test_bad_precision_or_memory_format_is_rejected(images, call, message):
    with pytest.raises(igos.IGOSError, match=message):
        call(WindowEvidenceNet(SIZE, WINDOW, channels=3), images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["igos++", "gradcam"])
def test_cuda_bf16_channels_last_is_close_to_fp32(images, method):
    model = WindowEvidenceNet(SIZE, WINDOW, channels=3).cuda()
    reference, _ = explain_recorded(model, images.cuda(), method)
    model = model.to(memory_format=torch.channels_last)
    fast, calls = explain_recorded(model, images.cuda(), method, precision="bf16", channels_last=True)
    assert calls.output_dtypes == {torch.bfloat16} and calls.channels_last_inputs == {True}
    assert fast.saliency.device.type == "cuda" and fast.saliency.dtype == torch.float32
    assert (fast.saliency - reference.saliency).abs().max() < BF16_TOLERANCE
