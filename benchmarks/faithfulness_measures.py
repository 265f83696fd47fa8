"""What the faithfulness benchmark measures (`python -m benchmarks.faithfulness`), as units and numbers: the
paper's Tables 1–2 (every method at its mask sizes, both protocols), the ablations of its Table 3, iGOS++ fast vs
faithful mode, the maps' mass on the synthetic ground truth (lesion, text, the text-removal counterfactual), and
the cascading model-parameter randomisation test (Adebayo et al. 2018)."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from benchmarks.faithfulness_units import METHODS, PROTOCOLS, Config, Runner, Subject, Unit
from pipeline.audit import saliency_shares, upsample_saliency

LABEL = dict((method, label) for label, method in METHODS)
MASK_METHODS = frozenset({"igos++", "igos+", "igos", "mask"})  # at every mask size
STOCHASTIC = frozenset({"igos++", "igos+", "igos", "rise"})  # noise in the iGOS family, random masks in RISE
# Table 3 rows: (label, method, options beyond the run's settings). "no BTV" keeps a smoothness term: plain TV.
ABLATIONS = (
    ("I-GOS", "igos", {}),
    ("Insertion (I-GOS with −S_ins)", "igos-insertion", {}),
    ("I-GOS + Insertion (naïve; = iGOS+)", "igos+", {}),
    ("iGOS++ (no noise: noise_std 0)", "igos++", {"noise_std": 0.0}),
    ("iGOS++ (fixed step: no line search, step 8)", "igos++", {"line_search": False}),
    ("iGOS++ (no BTV: plain TV instead)", "igos++", {"regularizer": "tv"}),
    ("iGOS++", "igos++", {}),
)
# Cascading randomisation (top-level module names, logits first), per architecture.
CASCADES = {
    "resnet18": (("logits (fc)", ("fc",)), ("+ layer4", ("layer4",)), ("+ layer3 (half)", ("layer3",)),
                 ("+ layer2", ("layer2",)), ("+ layer1, stem (all)", ("layer1", "bn1", "conv1"))),
    "small_cnn": (("logits (head)", ("head",)), ("+ stage 4", ("features.12", "features.13")),
                  ("+ stage 3 (half)", ("features.8", "features.9")), ("+ stage 2", ("features.4", "features.5")),
                  ("+ stage 1 (all)", ("features.0", "features.1"))),
}
CASCADES["resnet50"] = CASCADES["resnet18"]
SANITY_MAX_RHO = 0.5  # a method passes when its |mean ρ| stays below this at every cascade step (fixed beforehand)
MODES_TOLERANCE = 0.01  # fast must be within this of faithful on both insertion and deletion
SELF_SEED_OFFSET = 10_000  # the reseeded run that measures how much a stochastic method's map moves by chance


# ------------------------------------------------------------------------------------------------ units


def sizes_of(method: str, subject: Subject, cfg: Config) -> list[int]:
    """Mask sizes a method is evaluated at: every size (mask methods), the layer's (Grad-CAM), else the input's."""
    if method in MASK_METHODS:
        return cfg.mask_sizes
    return [subject.gradcam_size] if method == "gradcam" else [cfg.image_size]


def main_units(runner: Runner, subject: Subject) -> dict[tuple[str, int], Unit]:
    """Tables 1–2: every method at its sizes on all images, both protocols."""
    cfg = runner.cfg
    return {(method, size): runner.unit(subject, method, size, cfg.images)
            for _, method in METHODS for size in sizes_of(method, subject, cfg)}


def ablation_units(runner: Runner, subject: Subject, main: dict[tuple[str, int], Unit]
                   ) -> dict[tuple[str, int], Unit]:
    """Table 3 rows at 28×28 and the input size (protocol "igos"); rows equal to a main unit reuse its images."""
    cfg = runner.cfg
    units = {}
    for label, method, extra in ABLATIONS:
        for size in ablation_sizes(cfg):
            if not extra and (method, size) in main:
                units[label, size] = main[method, size].head(cfg.ablation_images)
            else:
                units[label, size] = runner.unit(subject, method, size, cfg.ablation_images, extra=extra,
                                                 protocols=("igos",))
    return units


def ablation_sizes(cfg: Config) -> list[int]:
    """The input size and 28 (when smaller), as Table 3's 224 and 28."""
    return sorted({cfg.image_size, min(28, cfg.image_size)}, reverse=True)


def mode_units(runner: Runner, subject: Subject, settings: dict[str, int] | None = None) -> dict[str, Unit]:
    """iGOS++ fast and faithful at 28×28 (or the input size when smaller) on the same images, one after the other,
    with the run's K and N or with `settings` ({"iterations": K, "ig_steps": N})."""
    cfg = runner.cfg
    size = min(28, cfg.image_size)
    return {mode: runner.unit(subject, "igos++", size, cfg.modes_images, extra={"mode": mode, **(settings or {})})
            for mode in ("fast", "faithful")}


def randomised(model: nn.Module, modules: Sequence[str], seed: int) -> nn.Module:
    """The model with every submodule under `modules` re-initialised (reset_parameters, seeded); a copy."""
    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    for name in modules:
        for module in model.get_submodule(name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return model.to(memory_format=torch.channels_last).eval()


def upsampled(maps: Tensor, size: int) -> np.ndarray:
    """Maps (n, h, w) bilinearly upsampled (align_corners=True, as igos) to (n, size·size)."""
    if maps.shape[-1] != size:
        maps = nn.functional.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    return maps.flatten(1).numpy()


def spearman(first: Tensor, second: Tensor, size: int) -> list[float]:
    """Spearman ρ per image of two map sets (n, h, w) upsampled to size² (NaN where a map is constant)."""
    rhos = []
    for x, y in zip(upsampled(first, size), upsampled(second, size), strict=True):
        constant = x.min() == x.max() or y.min() == y.max()
        rhos.append(math.nan if constant else float(spearmanr(x, y).statistic))
    return rhos


def mask_size_near_28(cfg: Config) -> int:
    """The mask size of the ground-truth and sanity tables: the computed one nearest the paper's 28×28."""
    return min(cfg.mask_sizes, key=lambda size: abs(size - 28))


def sanity_rows(runner: Runner, subject: Subject, main: dict[tuple[str, int], Unit]) -> list[dict[str, Any]]:
    """Cascading randomisation: per method, Spearman ρ of trained vs randomised maps after each cascade step.

    Mask methods at 28×28 (or the input size when smaller), Grad-CAM at its layer, the rest at the input size;
    the randomised models explain the trained model's top-1 class; the first cfg.sanity_images images.
    """
    cfg = runner.cfg
    n = min(cfg.sanity_images, cfg.images)
    steps, done = [], []
    for index, (name, modules) in enumerate(CASCADES[subject.name]):
        done += modules
        steps.append((name, randomised(subject.model, done, cfg.seed + 1000 + index)))
    rows = []
    for label, method in METHODS:
        size = mask_size_near_28(cfg) if method in MASK_METHODS else sizes_of(method, subject, cfg)[0]
        trained = main[method, size].head(n)
        row: dict[str, Any] = {"method": label, "size": size, "steps": {}, "constant_maps": 0, "low_score_warnings": 0}
        if method in STOCHASTIC:
            other = runner.unit(subject, method, size, n, protocols=(), seed_offset=SELF_SEED_OFFSET)
            row["self"] = summary(spearman(trained.saliency, other.saliency, cfg.image_size))
        for index, (name, model) in enumerate(steps):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                unit = runner.unit(subject, method, size, n, protocols=(), model=model, model_tag=f"random{index}",
                                   targets=trained.targets)
            row["low_score_warnings"] += sum("target score is below" in str(w.message) for w in caught)
            rhos = spearman(trained.saliency, unit.saliency, cfg.image_size)
            row["constant_maps"] += sum(math.isnan(r) for r in rhos)
            row["steps"][name] = {**summary(rhos), "constant": sum(math.isnan(r) for r in rhos)}
        finite = [step["mean"] for step in row["steps"].values() if math.isfinite(step["mean"])]
        row["passes"] = bool(finite) and all(abs(mean) < SANITY_MAX_RHO for mean in finite)  # |ρ|: inverted maps
        rows.append(row)
    return rows


def truth_rows(subject: Subject, main: dict[tuple[str, int], Unit], cfg: Config) -> list[dict[str, Any]]:
    """Per method: lesion and text shares of the maps (mask methods at 28×28) and text share by counterfactual."""
    truth = subject.truth
    assert truth is not None
    shape = truth.lesion.shape[1:]
    rows = []
    for label, method in METHODS:
        size = mask_size_near_28(cfg) if method in MASK_METHODS else sizes_of(method, subject, cfg)[0]
        maps = [upsample_saliency(m.numpy(), shape) for m in main[method, size].saliency]
        lesion_images = [i for i in range(len(maps)) if truth.lesion[i].any()]
        text_images = [i for i in range(len(maps)) if truth.text[i].any()]
        lesion_mass = [saliency_shares(maps[i], truth.lesion[i])[0] for i in lesion_images]
        pointing = [saliency_shares(maps[i], truth.lesion[i], 1 / maps[i].size)[1] for i in lesion_images]
        text = {i: saliency_shares(maps[i], truth.text[i])[0] for i in text_images}
        flipped = [text[i] for i in text_images if truth.flipped[i]]
        kept = [text[i] for i in text_images if not truth.flipped[i]]
        both = bool(flipped) and bool(kept)
        rows.append({
            "method": label, "size": size, "lesion_mass": summary(lesion_mass), "lesion_pointing": summary(pointing),
            "text_mass": summary(list(text.values())), "text_flipped": summary(flipped), "text_kept": summary(kept),
            "flip_auc": float(roc_auc_score(truth.flipped[text_images], list(text.values()))) if both else math.nan,
        })
    lesion_area = [float(truth.lesion[i].mean()) for i in range(len(truth.lesion)) if truth.lesion[i].any()]
    text_area = [float(truth.text[i].mean()) for i in range(len(truth.text)) if truth.text[i].any()]
    rows.append({"method": "(uniform map: area = chance)", "size": None, "lesion_mass": summary(lesion_area),
                 "lesion_pointing": summary(lesion_area), "text_mass": summary(text_area),
                 "text_flipped": summary([float(truth.text[i].mean()) for i in range(len(truth.text))
                                          if truth.text[i].any() and truth.flipped[i]]),
                 "text_kept": summary([float(truth.text[i].mean()) for i in range(len(truth.text))
                                       if truth.text[i].any() and not truth.flipped[i]]), "flip_auc": 0.5})
    return rows


# ---------------------------------------------------------------------------------------------- numbers


def summary(values: Sequence[float] | Tensor) -> dict[str, float]:
    """Mean, sample std and count of the finite values (NaN mean/std when there are none)."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    mean = sum(finite) / len(finite) if finite else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else math.nan
    return {"mean": mean, "std": std, "n": len(finite)}


def main_json(units: dict[tuple[str, int], Unit]) -> dict[str, Any]:
    """{method: {size: {"protocol/kind": stats, "seconds_per_image": s}}}."""
    out: dict[str, Any] = {}
    for (method, size), unit in units.items():
        entry = {name: summary(values) for name, values in unit.scores.items()}
        entry["seconds_per_image"] = unit.seconds / len(unit.targets)
        out.setdefault(LABEL[method], {})[str(size)] = entry
    return out


def paired(fast: Tensor, faithful: Tensor) -> dict[str, float]:
    """Paired difference fast − faithful (n,): mean, std, 95 % interval (normal approximation)."""
    stats = summary(fast - faithful)
    half = 1.96 * stats["std"] / math.sqrt(stats["n"]) if stats["n"] > 1 else math.nan
    return {**stats, "low": stats["mean"] - half, "high": stats["mean"] + half}


def modes_json(units: dict[str, Unit]) -> dict[str, Any]:
    """Fast vs faithful: each mode's scores and s / image, the paired differences, and per protocol whether fast
    is within MODES_TOLERANCE of faithful on both insertion and deletion."""
    fast, faithful = units["fast"], units["faithful"]
    out: dict[str, Any] = {mode: {"seconds_per_image": u.seconds / len(u.targets),
                                  **{k: summary(v) for k, v in u.scores.items()}} for mode, u in units.items()}
    out["difference"] = {k: paired(fast.scores[k], faithful.scores[k]) for k in fast.scores}
    out["passes"] = {p: all(abs(out["difference"][f"{p}/{k}"]["mean"]) <= MODES_TOLERANCE
                            for k in ("insertion", "deletion")) for p in PROTOCOLS}
    return out

