"""Speed benchmark of igos: iGOS++ and I-GOS, faithful vs fast mode, at several batch sizes (docs/igos.md §8).

Model: an untrained torchvision ResNet-18 (weights=None, seeded, eval mode) whose final layer is scaled
so that the mean top-1 softmax probability on the benchmark images is about 0.8, as in the CPU profile of the
official implementation quoted in docs/igos.md §8. Images: seeded random smooth images (blurred noise plus a few
bright blobs) with ImageNet normalisation. Nothing is downloaded.

For every method × mode × batch size it measures the median and mean wall time per image, the image forwards and
backwards per image (`Explanation.passes`), the iterations actually run, the line-search trials per
iteration, and checks the pass counts against the structure of docs/igos.md §8. It also reports the fast/faithful
time ratio and the Spearman rank correlation of the fast and faithful maps of the same image and seed.

The parts: Config, Measurement, the model, images and top-1 calibration in benchmarks/igos_speed_setup.py; the
markdown report (header, tables, map agreement) in benchmarks/igos_speed_report.py; measuring and the CLI here.

    python -m benchmarks.igos_speed --quick                 # seconds: proves the script runs
    python -m benchmarks.igos_speed                         # CPU defaults (see --help), ~15-20 min on 2 cores
    python -m benchmarks.igos_speed --device cuda --gpu-throughput
    python -m benchmarks.igos_speed --image-size 64 --mask-size 14 --iterations 5 --ig-steps 5 --methods igos++ \
        --modes fast --batch-sizes 1,4,16,64 --images 64 --out benchmarks/results/igos_speed_batch.md   # batch scaling
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

import igos
from benchmarks.common import RESULTS, load_average, program, write_report
from benchmarks.igos_speed_report import header, quality_table, reference_table, results_table, throughput_table
from benchmarks.igos_speed_setup import (
    SEED_NOISE_OFFSET,
    TERMS,
    Config,
    Measurement,
    calibrate_top1,
    make_images,
    make_model,
)

DEFAULT_OUT = RESULTS / "igos_speed.md"
# CPU defaults: one image at batch 1 and the full K = 20, N = 15 (an iGOS++ faithful image alone took 10 min on 2
# busy cores; batch sizes 4 and 16 would need 21 images per method and mode, i.e. hours). ~15-20 min on 2 cores.
# CUDA defaults: the whole default run plus --gpu-throughput took 218 s on an H100.
CPU_DEFAULTS = {"batch_sizes": "1", "images": 1, "forward_batch": 64}
CUDA_DEFAULTS = {"batch_sizes": "1,4,16", "images": 32, "forward_batch": 256}
# --quick uses 1 CPU thread: with 2 OpenMP threads on 2 cores shared with another process, its tiny ops ran ~25×
# slower (78 s instead of 3 s) while waiting at thread barriers.
QUICK = {"image_size": 32, "mask_size": 8, "iterations": 2, "ig_steps": 2, "batch_sizes": "1,2", "images": 2,
         "threads": 1}


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
