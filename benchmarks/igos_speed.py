"""Speed benchmark of igos: iGOS++ and I-GOS, faithful vs fast mode, at several batch sizes (docs/igos.md §8).

Model: an untrained torchvision ResNet-18 (weights=None, seeded, eval mode) whose final layer is scaled
so that the mean top-1 softmax probability on the benchmark images is about 0.8, as in the CPU profile of the
official implementation quoted in docs/igos.md §8. Images: seeded random smooth images (blurred noise plus a few
bright blobs) with ImageNet normalisation. Nothing is downloaded.

For every method × mode × batch size it measures the median and mean wall time per image, the image forwards and
backwards per image (`Explanation.passes`), the iterations actually run, the line-search trials per
iteration, and checks the pass counts against the structure of docs/igos.md §8. It also reports the fast/faithful
time ratio and the Spearman rank correlation of the fast and faithful maps of the same image and seed.

    python -m benchmarks.igos_speed --quick                 # seconds: proves the script runs
    python -m benchmarks.igos_speed                         # CPU defaults (see --help), ~15-20 min on 2 cores
    python -m benchmarks.igos_speed --device cuda --gpu-throughput
    python -m benchmarks.igos_speed --image-size 64 --mask-size 14 --iterations 5 --ig-steps 5 --methods igos++ \
        --modes fast --batch-sizes 1,4,16,64 --images 64 --out benchmarks/results/igos_speed_batch.md   # batch scaling
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor, nn
from torchvision.models import resnet18

import igos
from benchmarks.common import IMAGENET_MEAN, IMAGENET_STD, RESULTS, cpu_arch, load_average, now, program, write_report

DEFAULT_OUT = RESULTS / "igos_speed.md"
TARGET_TOP1 = 0.8
# Network terms per iteration of each variant (docs/igos.md §8): IG calls, and S terms per loss evaluation.
TERMS = {"igos++": 4, "igos+": 2, "igos": 1, "igos-insertion": 1}
# CPU defaults: one image at batch 1 and the full K = 20, N = 15 (an iGOS++ faithful image alone took 10 min on 2
# busy cores; batch sizes 4 and 16 would need 21 images per method and mode, i.e. hours). ~15-20 min on 2 cores.
# CUDA defaults: the whole default run plus --gpu-throughput took 218 s on an H100.
CPU_DEFAULTS = {"batch_sizes": "1", "images": 1, "forward_batch": 64}
CUDA_DEFAULTS = {"batch_sizes": "1,4,16", "images": 32, "forward_batch": 256}
# --quick uses 1 CPU thread: with 2 OpenMP threads on 2 cores shared with another process, its tiny ops ran ~25×
# slower (78 s instead of 3 s) while waiting at thread barriers.
QUICK = {"image_size": 32, "mask_size": 8, "iterations": 2, "ig_steps": 2, "batch_sizes": "1,2", "images": 2,
         "threads": 1}
SEED_NOISE_OFFSET = 10_000  # the reseeded runs that measure how much a map changes with the seed alone
REFERENCE = [
    # Quoted from docs/igos.md §8 (official implementation, 2-core CPU, ResNet-18, 28×28, K = 20, N = 15): not measured.
    ("iGOS++ (official)", "314", "≈ 8 640 (1 200 fwd+bwd + ≈ 7 440 line-search fwd)", "1 200"),
    ("I-GOS (official re-impl.)", "35.5", "300 fwd+bwd + 15·Σ(1+T_j)", "300"),
]


@dataclass
class Config:
    """Settings of one benchmark run (all of them recorded in the output header)."""

    device: torch.device
    methods: list[str]
    modes: list[str]
    batch_sizes: list[int]
    images: int
    image_size: int
    mask_size: int
    iterations: int
    ig_steps: int
    forward_batch: int
    seed: int
    threads: int | None
    quick: bool
    gpu_throughput: bool
    out: Path


@dataclass
class Measurement:
    """One method × mode × batch size: per-call timings and per-image results."""

    method: str
    mode: str
    batch: int
    seconds_per_image: list[float] = field(default_factory=list)
    forwards: int = 0
    backwards: int = 0
    expected_forwards: int = 0
    expected_backwards: int = 0
    iterations_run: list[int] = field(default_factory=list)
    trials: list[int] = field(default_factory=list)
    saliency: dict[int, Tensor] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.saliency)

    @property
    def median_seconds(self) -> float:
        """Median over calls of (call time / batch)."""
        return statistics.median(self.seconds_per_image)

    @property
    def mean_seconds(self) -> float:
        """Total time / images: comparable across batch sizes (a median over 1-image calls drops slow images)."""
        return statistics.fmean(self.seconds_per_image)


# ----------------------------------------------------------------------------------------------- setup


def make_images(count: int, size: int, seed: int) -> Tensor:
    """Seeded smooth RGB images (blurred noise + 3 bright blobs), ImageNet-normalised: (count, 3, size, size)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(2, size // 16), max(2, size // 16), generator=gen)
    base = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1) * 0.6 + 0.1
    grid = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    for _ in range(3):
        centre = torch.rand(count, 2, generator=gen) * 0.7 + 0.15
        radius = torch.rand(count, generator=gen) * 0.08 + 0.04
        colour = torch.rand(count, 3, generator=gen) * 0.5 + 0.5
        dist2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
        blob = torch.exp(-dist2 / (2 * radius[:, None, None] ** 2))
        base = base * (1 - blob[:, None]) + colour[:, :, None, None] * blob[:, None]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (base.clamp(0, 1) - mean) / std


def make_model(seed: int) -> nn.Module:
    """Untrained ResNet-18 (weights=None, never downloaded), seeded, in eval mode."""
    torch.manual_seed(seed)
    return resnet18(weights=None).eval()


def calibrate_top1(model: nn.Module, images: Tensor, target: float = TARGET_TOP1) -> tuple[float, float]:
    """Scale the final layer so the mean top-1 softmax probability on `images` is about `target`.

    Logits are linear in a common scale t of fc's weight and bias, and each image's top-1 probability of
    softmax(t·z) grows with t, so t is found by bisection on log t.

    Returns:
        (scale t, achieved mean top-1 probability, measured again through the scaled model).
    """
    with torch.no_grad():
        logits = model(images)

    def mean_top1(log_scale: float) -> float:
        return torch.softmax(logits * math.exp(log_scale), dim=1).amax(dim=1).mean().item()

    low, high = math.log(1e-6), math.log(1e6)
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if mean_top1(middle) < target else (low, middle)
    scale = math.exp((low + high) / 2)
    with torch.no_grad():
        model.fc.weight.mul_(scale)
        model.fc.bias.mul_(scale)
        achieved = torch.softmax(model(images), dim=1).amax(dim=1).mean().item()
    return scale, achieved


# ------------------------------------------------------------------------------------------ measuring


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work so that wall-clock timings are complete (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_explain(model: nn.Module, images: Tensor, *, method: str, mode: str, seed: int, cfg: Config
                  ) -> tuple[igos.Explanation, float]:
    """One `igos.explain` call and its wall time in seconds (perf_counter, CUDA-synchronised)."""
    synchronize(cfg.device)
    start = time.perf_counter()
    explanation = igos.explain(model, images, method=method, mask_size=cfg.mask_size, seed=seed,
                               batch_size=cfg.forward_batch, mode=mode, iterations=cfg.iterations,
                               ig_steps=cfg.ig_steps)
    synchronize(cfg.device)
    return explanation, time.perf_counter() - start


def line_search_trials(explanation: igos.Explanation) -> list[list[int]]:
    """Line-search trials T_j of every iteration run, per image, recovered from the accepted steps.

    Trials are start·shrink^j, j = 0, 1, ...; the accepted step is the last one tried, so
    T_j = round(log(step / start) / log(shrink)) + 1, with start = α0 (faithful) or
    min(α0, previous step / shrink) (warm start, previous step initially α0).
    """
    options = explanation.options
    alpha0, shrink = options["init_step"], options["step_shrink"]
    steps = explanation.history["step"].double().cpu()
    per_image = []
    for column in steps.T:
        previous, trials = alpha0, []
        for step in column[~torch.isnan(column)].tolist():
            start = min(alpha0, previous / shrink) if options["warm_start"] else alpha0
            trials.append(round(math.log(step / start) / math.log(shrink)) + 1)
            previous = step
        per_image.append(trials)
    return per_image


def expected_passes(method: str, explanation: igos.Explanation, trials: list[list[int]]) -> tuple[int, int]:
    """Image forwards and backwards that the structure of docs/igos.md §8 predicts for this call.

    Per image: 1 forward to find the target; per iteration run, T·N fwd+bwd for the integrated gradients,
    T·N forwards for the base loss unless it is reused from the IG pass, and T·N forwards per line-search
    trial (rounded up to whole rounds of `parallel_trials`).
    """
    options = explanation.options
    rows = TERMS[method] * options["ig_nodes"]
    per_round = options["parallel_trials"]
    forwards = backwards = 0
    for image_trials in trials:
        forwards += 1
        for t in image_trials:
            backwards += rows
            forwards += rows * (1 + (0 if options["reuse_base_loss"] else 1) + per_round * math.ceil(t / per_round))
    return forwards, backwards


def measure(model: nn.Module, images: Tensor, method: str, mode: str, batch: int, cfg: Config,
            seed_offset: int = 0) -> Measurement:
    """Explain the first `cfg.images` images (rounded up to whole batches) in calls of `batch` images.

    Image i always uses seed cfg.seed + seed_offset + i, so maps are paired across modes and batch sizes.
    """
    result = Measurement(method, mode, batch)
    n_images = batch * math.ceil(max(cfg.images, batch) / batch)
    for first in range(0, n_images, batch):
        chunk = images[first : first + batch]
        explanation, seconds = timed_explain(model, chunk, method=method, mode=mode,
                                             seed=cfg.seed + seed_offset + first, cfg=cfg)
        result.seconds_per_image.append(seconds / batch)
        result.forwards += explanation.passes.forwards
        result.backwards += explanation.passes.backwards
        trials = line_search_trials(explanation)
        expected = expected_passes(method, explanation, trials)
        result.expected_forwards += expected[0]
        result.expected_backwards += expected[1]
        result.iterations_run += (~torch.isnan(explanation.history["loss"])).sum(dim=0).tolist()
        result.trials += [t for image_trials in trials for t in image_trials]
        for offset, saliency in enumerate(explanation.saliency.cpu()):
            result.saliency[first + offset] = saliency
    return result


def warm_up(model: nn.Module, images: Tensor, cfg: Config) -> None:
    """One short untimed call (first method, one image, one iteration) before any timing."""
    igos.explain(model, images[:1], method=cfg.methods[0], mask_size=cfg.mask_size, seed=cfg.seed,
                 batch_size=cfg.forward_batch, mode=cfg.modes[0], iterations=1, ig_steps=cfg.ig_steps)
    synchronize(cfg.device)


def gpu_throughput(model: nn.Module, images: Tensor, cfg: Config) -> list[tuple[int, int, float]]:
    """Images/s of iGOS++ fast mode for batch 1 vs 32 (quick: 1 vs 4), same images and seeds.

    Returns:
        (batch, images, images per second) per batch size.
    """
    big = 4 if cfg.quick else 32
    rows = []
    for batch in (1, big):
        total = 0.0
        for first in range(0, big, batch):
            _, seconds = timed_explain(model, images[first : first + batch], method="igos++", mode="fast",
                                       seed=cfg.seed + first, cfg=cfg)
            total += seconds
        rows.append((batch, big, big / total))
    return rows


# --------------------------------------------------------------------------------------------- report


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
        f"- torch {torch.__version__}, python {platform.python_version()}, igos from {Path(igos.__file__).parent}",
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
        check = "match" if (r.forwards, r.backwards) == (r.expected_forwards, r.expected_backwards) else \
            f"**differs**: expected {r.expected_forwards / n:.0f} / {r.expected_backwards / n:.0f}"
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


# ------------------------------------------------------------------------------------------------ CLI


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command line → Config, with device-dependent defaults."""
    parser = argparse.ArgumentParser(
        prog=program(__file__), description=__doc__.split("\n\n")[0],
        epilog=f"CPU defaults: {CPU_DEFAULTS} (one iGOS++ faithful image at K = 20 takes minutes on 2 cores); "
               f"CUDA defaults: {CUDA_DEFAULTS}; --quick: {QUICK}.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    parser.add_argument("--methods", default="igos++,igos", help="comma-separated I-GOS family methods "
                        f"({', '.join(TERMS)}; default: igos++,igos)")
    parser.add_argument("--modes", default="faithful,fast", help="comma-separated (default: faithful,fast)")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated images per explain call "
                        f"(default: {CPU_DEFAULTS['batch_sizes']} on CPU, {CUDA_DEFAULTS['batch_sizes']} on CUDA)")
    parser.add_argument("--images", type=int, default=None, help="images per configuration, rounded up to whole "
                        f"batches (default: {CPU_DEFAULTS['images']} on CPU, {CUDA_DEFAULTS['images']} on CUDA)")
    parser.add_argument("--iterations", type=int, default=None, help="K (default 20); other values are flagged")
    parser.add_argument("--ig-steps", type=int, default=None, help="N (default 15); other values are flagged")
    parser.add_argument("--mask-size", type=int, default=None, help="mask side (default 28)")
    parser.add_argument("--image-size", type=int, default=None, help="input side (default 224; the model's cost "
                        "scales with its square, so batch and thread scaling can be measured on a CPU at e.g. 64)")
    parser.add_argument("--forward-batch", type=int, default=None, help="explain's batch_size: most images per "
                        f"forward pass (default: {CPU_DEFAULTS['forward_batch']} on CPU, "
                        f"{CUDA_DEFAULTS['forward_batch']} on CUDA)")
    parser.add_argument("--seed", type=int, default=0, help="model, images and explain seeds (default: 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own, "
                        "i.e. all cores; --quick: 1). On a shared CPU, 1 thread can be faster than 2")
    parser.add_argument("--quick", action="store_true", help="tiny run (32×32 input, K = N = 2, batch 1,2) that "
                        "only proves the script works; writes to a temp file unless --out is given")
    parser.add_argument("--gpu-throughput", action="store_true", help="also measure images/s of iGOS++ fast mode, "
                        "batch 1 vs 32 (CUDA only)")
    parser.add_argument("--out", type=Path, default=None, help=f"markdown output (default {DEFAULT_OUT}; "
                        "with --quick a temp file)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.gpu_throughput and args.device != "cuda":
        parser.error("--gpu-throughput needs --device cuda")
    if not set(_split(args.methods, str)) <= set(TERMS) or not set(_split(args.modes, str)) <= {"fast", "faithful"}:
        parser.error(f"--methods must be among {', '.join(TERMS)} and --modes among faithful, fast")
    defaults = dict(CUDA_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS)
    defaults.update(image_size=224, mask_size=28, iterations=20, ig_steps=15, threads=None)
    if args.quick:
        defaults.update(QUICK)

    def pick(name: str) -> object:
        value = getattr(args, name)
        return defaults[name] if value is None else value

    return Config(
        device=torch.device(args.device), methods=_split(args.methods, str), modes=_split(args.modes, str),
        batch_sizes=_split(str(pick("batch_sizes")), int), images=int(pick("images")),
        image_size=int(pick("image_size")), mask_size=int(pick("mask_size")), iterations=int(pick("iterations")),
        ig_steps=int(pick("ig_steps")), forward_batch=int(pick("forward_batch")), seed=args.seed,
        threads=None if pick("threads") is None else int(pick("threads")), quick=args.quick,
        gpu_throughput=args.gpu_throughput,
        out=args.out or (Path(tempfile.gettempdir()) / "igos_speed_quick.md" if args.quick else DEFAULT_OUT))


def _split(text: str, kind: Callable[[str], object]) -> list:
    return [kind(part.strip()) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the markdown report and write it to cfg.out."""
    cfg = parse_args(argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    load_start = load_average()
    n_images = max(b * math.ceil(max(cfg.images, b) / b) for b in cfg.batch_sizes)
    if cfg.gpu_throughput:
        n_images = max(n_images, 4 if cfg.quick else 32)
    images = make_images(n_images, cfg.image_size, cfg.seed)
    model = make_model(cfg.seed)
    scale, top1 = calibrate_top1(model, images)
    model, images = model.to(cfg.device), images.to(cfg.device)
    warm_up(model, images, cfg)

    results = []
    for method in cfg.methods:
        for batch in cfg.batch_sizes:
            for mode in cfg.modes:
                results.append(measure(model, images, method, mode, batch, cfg))
                r = results[-1]
                print(f"[{time.perf_counter() - started:7.1f} s] {method} {mode} batch {batch}: "
                      f"{r.median_seconds:.3f} s/image over {r.n_images} images", file=sys.stderr, flush=True)
    reseeded = [measure(model, images, method, mode, cfg.batch_sizes[0], cfg, seed_offset=SEED_NOISE_OFFSET)
                for method in cfg.methods for mode in cfg.modes]
    throughput = gpu_throughput(model, images, cfg) if cfg.gpu_throughput else None
    lines = header(cfg, scale, top1, (load_start, load_average()))
    lines += results_table(results, cfg) + quality_table(results, reseeded, cfg)
    lines += throughput_table(throughput) if throughput else []
    lines += reference_table()
    lines += ["", f"Total benchmark wall time: {time.perf_counter() - started:.0f} s."]
    report = "\n".join(lines) + "\n"
    print(report)
    write_report(cfg.out, report)
    print(f"written to {cfg.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
