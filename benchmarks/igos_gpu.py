"""GPU throughput of iGOS++ on ResNet-50 (issue 9): batch 1 vs 32, bf16 autocast, channels-last, torch.compile.

Model: an untrained torchvision ResNet-50 (weights=None, seeded, eval mode, frozen), 3×224×224 input, its final
layer scaled so the mean top-1 softmax probability is about 0.8 (as in benchmarks.igos_speed, whose image,
calibration and pass-count helpers this script reuses). iGOS++ fast mode (the default), mask 28×28, K = 20
iterations, N = 15 IG steps. Nothing is downloaded.

Settings are measured in order of priority; before each one the script predicts its time from the previous one and
skips it (saying so in the report) when it would overrun --budget-seconds. The report is rewritten after every
setting, so a run killed by an outer timeout still leaves what it measured. It records images/s, passes
(checked against the structure of docs/igos.md §8), model FLOPs, peak GPU memory, and, against fp32 at the same
batch and seeds, the
Spearman ρ of the maps and the insertion/deletion AUC differences (the AUCs are always computed in fp32), next to two
floors: fp32 batch 1 vs 32 (GPU kernels only) and another seed (iGOS++ is stochastic). One image with
--cpu-iterations iterations is also explained on the CPU and on the GPU for the GPU vs CPU ratio.

    python -m benchmarks.igos_gpu                 # CUDA: about 5-6 min on an H100/H200 (budget 330 s)
    python -m benchmarks.igos_gpu --quick         # CPU, seconds: tiny ResNet, 16×16 input; proves the script runs
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import resnet50
from torchvision.models.resnet import BasicBlock, ResNet

import igos
from benchmarks import common, igos_speed
from benchmarks.common import RESULTS, command_line, cpu_arch, now, program
from benchmarks.igos_speed_report import mean_spearman, passes_check, versions_line
from benchmarks.igos_speed_setup import SEED_NOISE_OFFSET, TARGET_TOP1, calibrate_top1, make_images

DEFAULT_OUT = RESULTS / "igos_gpu.md"
METHOD = "igos++"
TARGET_IMAGES_PER_SECOND = 5.0  # issue 9, on one H100-class GPU
SAFETY = 1.15  # predicted time of a setting = images × s/image of the previous setting × SAFETY (+ warm-up)
COMPILE_RESERVE_SECONDS = 150.0  # torch.compile of ResNet-50, forward and backward, a few shapes
CPU_RESERVE_SECONDS = 90.0  # one ResNet-50 image, one iteration, on the CPU
FULL = {"image_size": 224, "mask_size": 28, "iterations": 20, "ig_steps": 15, "batch": 32, "batch1_images": 8,
        "forward_batch": 512, "threads": None}
QUICK = {"image_size": 16, "mask_size": 8, "iterations": 2, "ig_steps": 2, "batch": 2, "batch1_images": 2,
         "forward_batch": 64, "threads": 1}


@dataclass
class Config:
    """Settings of one benchmark run (all recorded in the report)."""

    device: torch.device
    image_size: int
    mask_size: int
    iterations: int
    ig_steps: int
    batch: int
    batch1_images: int
    forward_batch: int
    cpu_iterations: int
    budget_seconds: float
    compile: bool
    seed: int
    threads: int | None
    quick: bool
    out: Path
    command: str


@dataclass(frozen=True)
class Setting:
    """One measured configuration: how the model is called, images per explain call, images in all."""

    precision: str
    channels_last: bool
    compiled: bool
    batch: int
    images: int
    seed_offset: int = 0

    @property
    def label(self) -> str:
        parts = [self.precision] + ["channels-last"] * self.channels_last + ["torch.compile"] * self.compiled
        return " + ".join(parts) + f", batch {self.batch}" + (", other seed" if self.seed_offset else "")


@dataclass
class Run:
    """Measurements of one setting; `insertion`/`deletion` are per-image fp32 AUCs of its maps."""

    setting: Setting
    seconds: float = 0.0
    warm_up_seconds: float = 0.0
    forwards: int = 0
    backwards: int = 0
    expected_forwards: int = 0
    expected_backwards: int = 0
    iterations_run: list[int] = field(default_factory=list)
    peak_memory_gib: float | None = None
    saliency: dict[int, Tensor] = field(default_factory=dict)
    insertion: dict[int, float] = field(default_factory=dict)
    deletion: dict[int, float] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return len(self.saliency) / self.seconds

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / len(self.saliency)


@dataclass
class CpuComparison:
    """The same one-image call (fp32, batch 1, `iterations`) on the CPU and on the GPU (median of 3)."""

    iterations: int
    cpu_seconds: float
    cpu_passes: int
    cpu_threads: int
    gpu_seconds: float
    gpu_passes: int

    @property
    def per_pass_ratio(self) -> float:
        """CPU time per image pass / GPU time per image pass (passes = forwards + backwards)."""
        return (self.cpu_seconds / self.cpu_passes) / (self.gpu_seconds / self.gpu_passes)


@dataclass
class State:
    """Everything measured so far, and what was skipped or failed, for the (re)written report."""

    cfg: Config
    started: float
    scale: float
    top1: float
    flops: tuple[int, int]
    runs: list[Run] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cpu: CpuComparison | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fits(self, label: str, predicted: float) -> bool:
        """Whether `predicted` more seconds stay within the budget; records the skip otherwise."""
        if self.elapsed() + predicted <= self.cfg.budget_seconds:
            return True
        self.skipped.append(f"{label}: skipped, predicted {predicted:.0f} s after {self.elapsed():.0f} s would "
                            f"exceed --budget-seconds {self.cfg.budget_seconds:.0f}")
        return False

    def run(self, setting: Setting) -> Run | None:
        return next((r for r in self.runs if r.setting == setting), None)


# ----------------------------------------------------------------------------------------------- setup


def make_model(cfg: Config) -> nn.Module:
    """Seeded, untrained (weights=None) ResNet-50, or with --quick a ResNet-10 (one BasicBlock per stage); eval
    mode with frozen weights."""
    torch.manual_seed(cfg.seed)
    model = ResNet(BasicBlock, [1, 1, 1, 1]) if cfg.quick else resnet50(weights=None)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def flops_per_image(model: nn.Module, cfg: Config) -> tuple[int, int]:
    """FLOPs of one image's forward and of its backward to the input (weights frozen), by FlopCounterMode."""
    image = torch.zeros(1, 3, cfg.image_size, cfg.image_size, device=cfg.device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        model(image)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model(image).sum().backward()
    return forward, counter.get_total_flops() - forward


def explain(model: nn.Module, images: Tensor, setting: Setting, seed: int, cfg: Config,
            iterations: int | None = None) -> tuple[igos.Explanation, float]:
    """One iGOS++ (fast mode) explain call of `images` (b, 3, S, S) and its wall time (CUDA-synchronised)."""
    igos_speed.synchronize(images.device)
    start = time.perf_counter()
    explanation = igos.explain(model, images, method=METHOD, mask_size=cfg.mask_size, seed=seed,
                               batch_size=cfg.forward_batch, iterations=iterations or cfg.iterations,
                               ig_steps=cfg.ig_steps, precision=setting.precision,
                               channels_last=setting.channels_last)
    igos_speed.synchronize(images.device)
    return explanation, time.perf_counter() - start


def measure(model: nn.Module, images: Tensor, setting: Setting, cfg: Config) -> Run:
    """Explain the first `setting.images` images in calls of `setting.batch`, after one untimed 1-iteration call.

    Image i uses seed cfg.seed + setting.seed_offset + i, so maps are paired across settings.
    """
    run = Run(setting)
    _, run.warm_up_seconds = explain(model, images[: setting.batch], setting, cfg.seed, cfg, iterations=1)
    if cfg.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(cfg.device)
    for first in range(0, setting.images, setting.batch):
        explanation, seconds = explain(model, images[first : first + setting.batch], setting,
                                       cfg.seed + setting.seed_offset + first, cfg)
        run.seconds += seconds
        run.forwards += explanation.passes.forwards
        run.backwards += explanation.passes.backwards
        expected = igos_speed.expected_passes(METHOD, explanation, igos_speed.line_search_trials(explanation))
        run.expected_forwards += expected[0]
        run.expected_backwards += expected[1]
        run.iterations_run += (~torch.isnan(explanation.history["loss"])).sum(dim=0).tolist()
        for offset, saliency in enumerate(explanation.saliency):
            run.saliency[first + offset] = saliency
    if cfg.device.type == "cuda":
        run.peak_memory_gib = torch.cuda.max_memory_allocated(cfg.device) / 2**30
    return run


def score_maps(model: nn.Module, images: Tensor, run: Run, cfg: Config) -> None:
    """Insertion/deletion AUCs (igos protocol, fp32 forwards) of the run's maps, per image."""
    index = sorted(run.saliency)
    scores = igos.insertion_deletion(model, images[index], torch.stack([run.saliency[i] for i in index]),
                                     batch_size=cfg.forward_batch)
    run.insertion = dict(zip(index, scores.insertion.tolist(), strict=True))
    run.deletion = dict(zip(index, scores.deletion.tolist(), strict=True))
    run.saliency = {i: saliency.cpu() for i, saliency in run.saliency.items()}


def compare_with_cpu(model: nn.Module, images: Tensor, cfg: Config) -> CpuComparison:
    """The first image, fp32, batch 1, `cfg.cpu_iterations` iterations, on the CPU (all its threads) and the GPU."""
    setting = Setting("fp32", False, False, 1, 1)
    cpu_model, cpu_image = copy.deepcopy(model).cpu(), images[:1].cpu()
    cpu_explanation, cpu_seconds = explain(cpu_model, cpu_image, setting, cfg.seed, cfg, cfg.cpu_iterations)
    gpu_calls = [explain(model, images[:1], setting, cfg.seed, cfg, cfg.cpu_iterations) for _ in range(3)]
    gpu_explanation, _ = gpu_calls[0]
    return CpuComparison(cfg.cpu_iterations, cpu_seconds,
                         cpu_explanation.passes.forwards + cpu_explanation.passes.backwards,
                         torch.get_num_threads(), statistics.median(seconds for _, seconds in gpu_calls),
                         gpu_explanation.passes.forwards + gpu_explanation.passes.backwards)


# --------------------------------------------------------------------------------------------- report


def header(state: State) -> list[str]:
    """Date, command, card, versions and every setting."""
    cfg = state.cfg
    if cfg.device.type == "cuda":
        properties = torch.cuda.get_device_properties(cfg.device)
        device = (f"{torch.cuda.get_device_name(cfg.device)}, {properties.total_memory / 2**30:.0f} GiB, CUDA "
                  f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; TF32: cudnn "
                  f"{torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}")
    else:
        device = f"CPU ({cpu_arch()}), torch threads {torch.get_num_threads()}"
    model = "ResNet-10 (torchvision ResNet, one BasicBlock per stage)" if cfg.quick else "torchvision resnet50"
    forward, backward = state.flops
    return [
        "# iGOS++ GPU throughput" + (" (--quick: tiny settings on the CPU, not a measurement to quote)"
                                     if cfg.quick else ""),
        "",
        f"- date: {now()}",
        f"- command: `{cfg.command}`",
        f"- device: {cfg.device.type} ({device})",
        versions_line(),
        f"- model: {model}(weights=None), seed {cfg.seed}, eval mode, frozen, input 3×{cfg.image_size}×"
        f"{cfg.image_size}; final layer scaled ×{state.scale:.4g} → mean top-1 softmax probability "
        f"{state.top1:.3f} (target {TARGET_TOP1}); {forward / 1e9:.2f} GFLOP forward, "
        f"{backward / 1e9:.2f} GFLOP backward to the input per image (FlopCounterMode)",
        f"- iGOS++ fast mode (default levers), mask {cfg.mask_size}×{cfg.mask_size}, K = {cfg.iterations}, "
        f"N = {cfg.ig_steps}, explain batch_size (images per forward pass) {cfg.forward_batch}; seeded smooth "
        f"random images (igos_speed.make_images), image i uses explain seed {cfg.seed}+i",
        "- timing: time.perf_counter around each explain call"
        + (", torch.cuda.synchronize before and after" if cfg.device.type == "cuda" else "")
        + "; each setting starts with one untimed 1-iteration call (warm-up; for torch.compile it includes the "
        f"compilation); images / s = images / total timed wall time; budget {cfg.budget_seconds:.0f} s",
        "",
    ]


def throughput_table(state: State) -> list[str]:
    """Images/s and passes of every measured setting."""
    forward, backward = state.flops
    lines = [
        "| setting | batch | images | images / s | s / image | iterations run (mean) | fwd / image | bwd / image "
        "| passes vs §8 structure | TFLOP / image | achieved TFLOP/s | peak GPU memory (GiB) | warm-up (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in state.runs:
        n = len(r.saliency)
        check = passes_check((r.forwards, r.backwards), (r.expected_forwards, r.expected_backwards), n)
        tflop = (r.forwards * forward + r.backwards * backward) / n / 1e12
        memory = "–" if r.peak_memory_gib is None else f"{r.peak_memory_gib:.1f}"
        lines.append(f"| {r.setting.label} | {r.setting.batch} | {n} | {r.images_per_second:.3f} "
                     f"| {r.seconds_per_image:.3f} | {statistics.fmean(r.iterations_run):.1f} / {state.cfg.iterations} "
                     f"| {r.forwards / n:.0f} | {r.backwards / n:.0f} | {check} | {tflop:.2f} "
                     f"| {tflop * r.images_per_second:.1f} | {memory} | {r.warm_up_seconds:.1f} |")
    return lines


def reference_of(state: State, setting: Setting) -> Run | None:
    """The run a setting's maps are compared with: the same setting with seed offset 0 for a reseeded run,
    else fp32 at batch cfg.batch."""
    if setting.seed_offset:
        return state.run(Setting(setting.precision, setting.channels_last, setting.compiled, setting.batch,
                                 setting.images))
    return state.run(Setting("fp32", False, False, state.cfg.batch, state.cfg.batch))


def quality_table(state: State) -> list[str]:
    """Spearman ρ and AUC differences of every run against its reference, on the images both explained."""
    lines = ["", "Maps against a reference on the same images: fp32 at batch "
             f"{state.cfg.batch} with the same seeds, except the *other seed* row, which compares with the same "
             "setting at the usual seeds (the stochastic floor). fp32 batch 1 vs fp32 batch "
             f"{state.cfg.batch} is the floor of GPU kernels alone. AUCs: insertion/deletion, igos protocol, fp32 "
             "forwards; Δ = run − reference, mean over images.", "",
             "| setting | images compared | Spearman ρ mean (min) | insertion AUC (mean) | deletion AUC (mean) "
             "| mean abs Δ insertion | mean Δ insertion | mean abs Δ deletion | mean Δ deletion |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in state.runs:
        reference = reference_of(state, r.setting)
        auc = f"| {statistics.fmean(r.insertion.values()):.4f} | {statistics.fmean(r.deletion.values()):.4f} "
        if reference is None or reference is r:
            lines.append(f"| {r.setting.label} | {'(reference)' if reference is r else '– (no reference run)'} | – "
                         f"{auc}| – | – | – | – |")
            continue
        common = sorted(set(r.saliency) & set(reference.saliency))
        spearman = mean_spearman({i: r.saliency[i] for i in common}, reference.saliency)
        rho = f"{spearman[2]:.3f} ({spearman[3]:.3f})" + (f", {spearman[1]} constant" if spearman[1] else "")
        cells = []
        for mine, theirs in ((r.insertion, reference.insertion), (r.deletion, reference.deletion)):
            deltas = [mine[i] - theirs[i] for i in common]
            cells += [f"{statistics.fmean(abs(d) for d in deltas):.4f}", f"{statistics.fmean(deltas):+.4f}"]
        lines.append(f"| {r.setting.label} | {len(common)} | {rho} {auc}| {' | '.join(cells)} |")
    return lines


def summary(state: State) -> list[str]:
    """Target, speed-ups, GPU vs CPU and skipped settings."""
    cfg, lines = state.cfg, ["", "## Summary", ""]
    best = max(state.runs, key=lambda r: r.images_per_second, default=None)
    if best is not None:
        verdict = "met" if best.images_per_second >= TARGET_IMAGES_PER_SECOND else "not met"
        lines.append(f"- best: **{best.images_per_second:.2f} images/s** ({best.setting.label}); issue 9's target "
                     f"≥ {TARGET_IMAGES_PER_SECOND:g} images/s on one H100-class GPU: {verdict}"
                     + (" (--quick: not comparable)" if cfg.quick else ""))
    rate = {r.setting: r.images_per_second for r in state.runs}
    pairs = [("batch {b} vs batch 1 (fp32)", Setting("fp32", False, False, cfg.batch, cfg.batch),
              Setting("fp32", False, False, 1, cfg.batch1_images)),
             ("bf16 vs fp32 (batch {b})", Setting("bf16", False, False, cfg.batch, cfg.batch),
              Setting("fp32", False, False, cfg.batch, cfg.batch)),
             ("channels-last on top of bf16 (batch {b})", Setting("bf16", True, False, cfg.batch, cfg.batch),
              Setting("bf16", False, False, cfg.batch, cfg.batch)),
             ("torch.compile on top of bf16 + channels-last (batch {b})",
              Setting("bf16", True, True, cfg.batch, cfg.batch), Setting("bf16", True, False, cfg.batch, cfg.batch))]
    for text, faster, slower in pairs:
        if faster in rate and slower in rate:
            lines.append(f"- speed-up {text.format(b=cfg.batch)}: {rate[faster] / rate[slower]:.2f}×")
    batch1 = state.run(Setting("fp32", False, False, 1, cfg.batch1_images))
    if state.cpu is not None:
        c = state.cpu
        lines.append(f"- GPU vs CPU, the same call (first image, fp32, batch 1, {c.iterations} iteration(s)): CPU "
                     f"{c.cpu_seconds:.2f} s for {c.cpu_passes} image passes ({c.cpu_threads} threads), GPU "
                     f"{c.gpu_seconds:.3f} s for {c.gpu_passes} (median of 3); per image pass the GPU is "
                     f"**{c.per_pass_ratio:.0f}×** faster")
        if batch1 is not None and best is not None:
            cpu_rate = batch1.images_per_second / c.per_pass_ratio
            lines.append(f"- projected CPU throughput at the full settings (fp32 batch-1 GPU rate / that ratio): "
                         f"{cpu_rate:.4f} images/s; best GPU setting vs CPU: "
                         f"≈ {best.images_per_second / cpu_rate:.0f}×")
    lines += [f"- {line}" for line in state.skipped]
    lines += ["", "Quoted from issue 9, **not measured here**: the paper reports about 0.06 images/s on a GTX 1080 Ti; "
              "the arithmetic limit on an H100-class GPU is about 12 images/s (~22 TFLOP per image).",
              "", f"Total benchmark wall time: {state.elapsed():.0f} s."]
    return lines


def write_report(state: State) -> str:
    """Render the report of what was measured so far and write it to cfg.out."""
    report = "\n".join(header(state) + throughput_table(state) + quality_table(state) + summary(state)) + "\n"
    common.write_report(state.cfg.out, report)
    return report


# ------------------------------------------------------------------------------------------------ run


def settings(cfg: Config) -> list[Setting]:
    """Settings in order of priority (each expected no slower per image than the one before)."""
    big = cfg.batch
    return [Setting("fp32", False, False, 1, cfg.batch1_images),
            Setting("fp32", False, False, big, big),
            Setting("bf16", False, False, big, big),
            Setting("bf16", True, False, big, big),
            Setting("bf16", True, False, 2 * big, 2 * big),
            Setting("bf16", True, False, big, big, seed_offset=SEED_NOISE_OFFSET)]


def measure_all(state: State, model: nn.Module, images: Tensor) -> None:
    """Measure every setting that fits the budget, then the CPU comparison and torch.compile; report after each."""
    cfg = state.cfg
    channels_last_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for setting in settings(cfg):
        if state.runs and not state.fits(setting.label, setting.images * state.runs[-1].seconds_per_image * SAFETY):
            continue
        run = measure(channels_last_model if setting.channels_last else model, images, setting, cfg)
        score_maps(model, images, run, cfg)
        state.runs.append(run)
        print(f"[{state.elapsed():6.1f} s] {setting.label}: {run.images_per_second:.3f} images/s",
              file=sys.stderr, flush=True)
        write_report(state)

    if cfg.device.type != "cuda":
        state.skipped.append("GPU vs CPU: skipped, the benchmark device is the CPU")
    elif state.fits("GPU vs CPU", CPU_RESERVE_SECONDS):
        state.cpu = compare_with_cpu(model, images, cfg)
        write_report(state)

    compiled = Setting("bf16", True, True, cfg.batch, cfg.batch)
    baseline = state.run(Setting("bf16", True, False, cfg.batch, cfg.batch))
    if not cfg.compile:
        state.skipped.append(f"{compiled.label}: skipped (--no-compile or --quick)")
    elif baseline is None:
        state.skipped.append(f"{compiled.label}: skipped, bf16 + channels-last was not measured")
    elif state.fits(compiled.label, COMPILE_RESERVE_SECONDS + baseline.seconds * SAFETY):
        try:
            run = measure(torch.compile(channels_last_model), images, compiled, cfg)
        except Exception as error:  # a missing C compiler or an inductor bug is a result to report
            state.skipped.append(f"{compiled.label}: failed: {type(error).__name__}: {str(error).splitlines()[0]}")
        else:
            score_maps(model, images, run, cfg)
            state.runs.append(run)
    write_report(state)


def parse_args(argv: Sequence[str]) -> Config:
    """Command line → Config (CUDA unless --quick)."""
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__.split("\n\n")[0],
                                     epilog=f"Full settings: {FULL}; --quick: {QUICK}.")
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 images, K = N = 2, on the CPU unless "
                        "--device cuda: proves the script runs; writes to a temp file unless --out is given")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda (cpu with --quick); the full settings need cuda")
    parser.add_argument("--budget-seconds", type=float, default=330.0, help="skip settings predicted to end after "
                        "this many seconds from the start (default 330)")
    parser.add_argument("--batch", type=int, default=None, help=f"the large batch (default {FULL['batch']}; the "
                        "bf16 + channels-last setting also runs at twice it)")
    parser.add_argument("--batch1-images", type=int, default=None, help="images explained at batch 1 "
                        f"(default {FULL['batch1_images']})")
    parser.add_argument("--forward-batch", type=int, default=None, help="explain's batch_size: images per forward "
                        f"pass (default {FULL['forward_batch']})")
    parser.add_argument("--cpu-iterations", type=int, default=1, help="iterations of the GPU vs CPU call (default 1)")
    parser.add_argument("--no-compile", action="store_true", help="do not try torch.compile")
    parser.add_argument("--seed", type=int, default=0, help="model, images and explain seeds (default 0)")
    parser.add_argument("--out", type=Path, default=None, help=f"markdown report (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.quick else "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available: run on a GPU machine, or use --quick for the CPU")
    if device == "cpu" and not args.quick:
        parser.error("the full settings need --device cuda; on the CPU use --quick")
    defaults = QUICK if args.quick else FULL
    return Config(
        device=torch.device(device), image_size=defaults["image_size"], mask_size=defaults["mask_size"],
        iterations=defaults["iterations"], ig_steps=defaults["ig_steps"], batch=args.batch or defaults["batch"],
        batch1_images=args.batch1_images or defaults["batch1_images"],
        forward_batch=args.forward_batch or defaults["forward_batch"], cpu_iterations=args.cpu_iterations,
        budget_seconds=args.budget_seconds, compile=not (args.no_compile or args.quick), seed=args.seed,
        threads=defaults["threads"], quick=args.quick,
        out=args.out or (Path(tempfile.gettempdir()) / "igos_gpu_quick.md" if args.quick else DEFAULT_OUT),
        command=command_line(__file__, argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report and write it to cfg.out (also after every setting)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(argv)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        started = time.perf_counter()
        images = make_images(max(2 * cfg.batch, cfg.batch1_images), cfg.image_size, cfg.seed)
        model = make_model(cfg).to(cfg.device)
        images = images.to(cfg.device)
        scale, top1 = calibrate_top1(model, images)
        state = State(cfg, started, scale, top1, flops_per_image(model, cfg))
        measure_all(state, model, images)
        print(write_report(state))
        print(f"written to {cfg.out}", file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
