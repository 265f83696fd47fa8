"""igos: iGOS++ and related saliency methods for PyTorch classifiers, with insertion/deletion metrics.

A standalone library (torch and numpy only). Entry points:

    explanation = igos.explain(model, images, method="igos++", mask_size=28)
    scores = igos.insertion_deletion(model, images, explanation.saliency)

Implements iGOS++ (Khorram, Lawson & Li, CHIL 2021), I-GOS (Qi, Khorram & Li, AAAI 2020),
meaningful perturbation, RISE, Grad-CAM, integrated gradients and the plain gradient. The mathematics,
the modes and the metrics are described in docs/igos.md.
"""

from ._composition import blur_baseline
from ._errors import IGOSError, NonFiniteError
from ._explain import METHODS, Explanation, explain, normalise_maps
from ._gradients import last_conv_layer
from ._integral import path_integral
from ._metrics import CausalScores, insertion_deletion
from ._options import GradCAMOptions, GradientOptions, IGOSOptions, IntegratedGradientsOptions, MaskOptions, RiseOptions
from ._quadrature import path_nodes
from ._scoring import PassCount

__all__ = [
    "METHODS",
    "CausalScores",
    "Explanation",
    "GradCAMOptions",
    "GradientOptions",
    "IGOSError",
    "IGOSOptions",
    "IntegratedGradientsOptions",
    "MaskOptions",
    "NonFiniteError",
    "PassCount",
    "RiseOptions",
    "blur_baseline",
    "explain",
    "insertion_deletion",
    "last_conv_layer",
    "normalise_maps",
    "path_integral",
    "path_nodes",
]
