"""The speed benchmark's report (`python -m benchmarks.igos_speed`): the header that names the machine and every
setting, the tables of timings and passes, of map agreement (fast vs faithful, seed noise, batch invariance), of
GPU throughput and of the official implementation's quoted cost, and the helpers they use (benchmarks.igos_gpu
uses mean_spearman and passes_check too)."""

from __future__ import annotations

import math
import os
import platform
import statistics
from pathlib import Path

import torch
from scipy.stats import spearmanr
from torch import Tensor

import igos
from benchmarks.common import cpu_arch, now
from benchmarks.igos_speed_setup import TARGET_TOP1, Config, Measurement

REFERENCE = [
    # Quoted from docs/igos.md §8 (official implementation, 2-core CPU, ResNet-18, 28×28, K = 20, N = 15): not measured.
    ("iGOS++ (official)", "314", "≈ 8 640 (1 200 fwd+bwd + ≈ 7 440 line-search fwd)", "1 200"),
    ("I-GOS (official re-impl.)", "35.5", "300 fwd+bwd + 15·Σ(1+T_j)", "300"),
]


def mean_spearman(first: dict[int, Tensor], second: dict[int, Tensor]) -> tuple[int, int, float, float] | None:
    """Mean and min Spearman ρ between the maps of the same images in two runs.

    Returns:
        (images compared, images where ρ is undefined because a map is constant, mean ρ, min ρ) — mean and
        min over the defined ones (NaN if none) — or None when no image is in both runs.
    """
    common = sorted(set(first) & set(second))
    if not common:
        return None
    rhos = []
    for index in common:
        a, b = first[index].flatten(), second[index].flatten()
        if a.min() < a.max() and b.min() < b.max():
            rhos.append(float(spearmanr(a.numpy(), b.numpy()).statistic))
    if not rhos:
        return len(common), len(common), math.nan, math.nan
    return len(common), len(common) - len(rhos), statistics.fmean(rhos), min(rhos)


def maps_of(results: list[Measurement], method: str, mode: str) -> dict[int, Tensor]:
    """The first map of each image for one method and mode (any batch size)."""
    maps: dict[int, Tensor] = {}
    for r in results:
        if r.method == method and r.mode == mode:
            for index, saliency in r.saliency.items():
                maps.setdefault(index, saliency)
    return maps


def batch_invariance(results: list[Measurement], method: str, mode: str) -> float | None:
    """Largest |Δ saliency| of the same image and seed between batch sizes (None with one batch size)."""
    runs = [r for r in results if r.method == method and r.mode == mode]
    worst = None
    for r in runs[1:]:
        for index, saliency in r.saliency.items():
            if index in runs[0].saliency:
                diff = (saliency - runs[0].saliency[index]).abs().max().item()
                worst = diff if worst is None else max(worst, diff)
    return worst


def fast_faithful_ratio(results: list[Measurement], r: Measurement) -> str:
    """Time of fast mode / faithful mode for the same method and batch, 'median; mean' ('' if absent)."""
    pair = {m.mode: m for m in results if m.method == r.method and m.batch == r.batch}
    if r.mode != "fast" or "faithful" not in pair:
        return ""
    fast, faithful = pair["fast"], pair["faithful"]
    return f"{fast.median_seconds / faithful.median_seconds:.2f}; {fast.mean_seconds / faithful.mean_seconds:.2f}"


def versions_line() -> str:
    """The report line naming the torch, python and igos in use."""
    return f"- torch {torch.__version__}, python {platform.python_version()}, igos from {Path(igos.__file__).parent}"


def passes_check(counted: tuple[int, int], expected: tuple[int, int], images: int) -> str:
    """'match' when the image (forwards, backwards) counted equal those the structure of docs/igos.md §8 predicts,
    else the expected ones per image."""
    if counted == expected:
        return "match"
    return f"**differs**: expected {expected[0] / images:.0f} / {expected[1] / images:.0f}"


def header(cfg: Config, scale: float, top1: float, load: tuple[float, float]) -> list[str]:
    """Markdown header: date, versions, device, threads and every setting."""
    device_name = torch.cuda.get_device_name(cfg.device) if cfg.device.type == "cuda" else cpu_arch()
    if cfg.device.type == "cuda":
        device_name += (f"; TF32: cudnn {torch.backends.cudnn.allow_tf32}, matmul "
                        f"{torch.backends.cuda.matmul.allow_tf32}")
    reduced = cfg.iterations != 20 or cfg.ig_steps != 15
    lines = [
        "# igos speed benchmark" + (" (--quick: tiny settings, not a measurement to quote)" if cfg.quick else ""),
        "",
        f"- date: {now()}",
        versions_line(),
        f"- device: {cfg.device.type} ({device_name}), torch threads: {torch.get_num_threads()}, CPU cores: "
        f"{os.cpu_count()}, 1-min load average at start / end: {load[0]:.2f} / {load[1]:.2f} (other processes "
        "competing for the cores inflate CPU timings)",
        f"- model: torchvision resnet18(weights=None), seed {cfg.seed}, eval mode, input 3×{cfg.image_size}×"
        f"{cfg.image_size}; final layer scaled ×{scale:.4g} → mean top-1 softmax probability {top1:.3f} "
        f"(target {TARGET_TOP1})",
        f"- images: seeded smooth random images (blurred noise + 3 blobs), ImageNet-normalised; image i uses "
        f"explain seed {cfg.seed}+i",
        f"- settings: mask {cfg.mask_size}×{cfg.mask_size}, K = {cfg.iterations} iterations, N = {cfg.ig_steps} IG "
        f"steps" + (" (**not the default K = 20, N = 15**)" if reduced else "") +
        f", explain batch_size (forward chunk) {cfg.forward_batch}, images per configuration ≥ {cfg.images} "
        f"(rounded up to whole batches), methods {', '.join(cfg.methods)}, modes {', '.join(cfg.modes)}, "
        f"batch sizes {', '.join(map(str, cfg.batch_sizes))}",
        "- batch = images per explain call; s/image (median) = median over calls of (call wall time / batch), "
        "s/image (mean) = total wall time / images (the one to compare across batch sizes); "
        "time.perf_counter" + (", torch.cuda.synchronize around each call" if cfg.device.type == "cuda" else "") +
        ", after one untimed warm-up call",
        "",
    ]
    return lines


def results_table(results: list[Measurement], cfg: Config) -> list[str]:
    """Markdown table of the measurements."""
    lines = [
        "| method | mode | batch | images | iterations run (mean) | trials / iteration (mean) | s / image (median) "
        "| s / image (mean) | fwd / image | bwd / image | passes vs §8 structure "
        "| fast / faithful time (median; mean) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        n = r.n_images
        check = passes_check((r.forwards, r.backwards), (r.expected_forwards, r.expected_backwards), n)
        trials = f"{statistics.fmean(r.trials):.2f}" if r.trials else "–"
        lines.append(
            f"| {r.method} | {r.mode} | {r.batch} | {n} | {statistics.fmean(r.iterations_run):.1f} / {cfg.iterations} "
            f"| {trials} | {r.median_seconds:.3f} | {r.mean_seconds:.3f} | {r.forwards / n:.0f} "
            f"| {r.backwards / n:.0f} | {check} | {fast_faithful_ratio(results, r)} |")
    return lines


def quality_table(results: list[Measurement], reseeded: list[Measurement], cfg: Config) -> list[str]:
    """Markdown table: Spearman ρ of fast vs faithful maps, next to the seed noise of each mode
    (same mode, another seed), and batch invariance per method."""
    lines = ["", "Spearman ρ between maps of the same image: fast vs faithful (same seed), and each mode against "
             "itself with another seed (the noise floor: iGOS++ is stochastic). Mean (min) over images.", "",
             "| method | images | fast vs faithful | faithful vs faithful, other seed | fast vs fast, other seed "
             "| constant maps | max abs Δ saliency across batch sizes (faithful / fast) |",
             "|---|---:|---|---|---|---:|---|"]

    def cell(pair: tuple[int, int, float, float] | None) -> str:
        return "–" if pair is None else f"{pair[2]:.3f} ({pair[3]:.3f})"

    for method in cfg.methods:
        pair = mean_spearman(maps_of(results, method, "fast"), maps_of(results, method, "faithful"))
        noise = {mode: mean_spearman(maps_of(results, method, mode), maps_of(reseeded, method, mode))
                 for mode in ("faithful", "fast")}
        invariance = " / ".join("–" if (d := batch_invariance(results, method, mode)) is None else f"{d:.2g}"
                                for mode in ("faithful", "fast"))
        constant = pair[1] if pair else 0
        lines.append(f"| {method} | {pair[0] if pair else 0} | {cell(pair)} | {cell(noise['faithful'])} "
                     f"| {cell(noise['fast'])} | {constant} | {invariance} |")
    return lines


def reference_table() -> list[str]:
    """The official implementation's cost, quoted from docs/igos.md §8 (not measured by this script)."""
    lines = ["", "Reference, **quoted from docs/igos.md §8, not measured here**: the official implementation on a "
             "2-core CPU, "
             "untrained ResNet-18 with the final layer scaled to p ≈ 0.8, 28×28, K = 20, N = 15, one 224×224 image; "
             "≈ 5.2 line-search trials per iteration (6.2 loss evaluations incl. the base; the table above counts "
             "trials without the base).",
             "", "| implementation | s / image | image fwd / image | image bwd / image |", "|---|---:|---|---:|"]
    lines += [f"| {name} | {seconds} | {fwd} | {bwd} |" for name, seconds, fwd, bwd in REFERENCE]
    return lines


def throughput_table(rows: list[tuple[int, int, float]]) -> list[str]:
    """Markdown table of the GPU throughput measurement."""
    lines = ["", "GPU throughput, iGOS++ fast mode (same images and seeds for both batch sizes; images / s = images "
             "/ total wall time of all calls, so it includes slow images that the median above hides):", "",
             "| batch | images | images / s |", "|---:|---:|---:|"]
    lines += [f"| {batch} | {images} | {rate:.3f} |" for batch, images, rate in rows]
    if len(rows) == 2:
        lines.append(f"\nspeed-up batch {rows[1][0]} vs 1: {rows[1][2] / rows[0][2]:.2f}×")
    return lines
