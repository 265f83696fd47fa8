"""Faithfulness benchmark: the iGOS++ paper's Tables 1–3 on classifiers trained here, with ground truth and a
sanity check.

Synthetic path (default; nothing is downloaded). Generates a COVIDx-like dataset with its default text shortcut
(datasets.synthetic), trains (seeded, pipeline.train) the small CNN, a ResNet-18 and a ResNet-50 at a low input
resolution (checkpoints cached under --work), and on the `test` split measures:

1. insertion and deletion AUCs (igos.insertion_deletion, protocols "igos" and "rise") of iGOS++, iGOS+, I-GOS,
   Mask, RISE, Grad-CAM, integrated gradients and the gradient at mask sizes 7, 14, 28 and the input size
   (Grad-CAM at its layer's size; RISE, integrated gradients, gradient at the input size), mean ± std, one table
   per architecture as the paper's Tables 1–2;
2. the ablations of Table 3 on the ResNet-18 (28×28 and the input size, protocol "igos");
3. iGOS++ fast vs faithful mode: insertion/deletion and time per image;
4. ground truth: saliency mass on the lesion and on the burned-in text, and the text share on images whose
   prediction flips when the text alone is removed (the generator's text-free copy) vs those where it does not;
5. the model-parameter randomisation test (Adebayo et al. 2018): layers re-initialised from the logits down,
   cumulatively; Spearman ρ between the trained and the randomised model's maps.

ImageNet path (--imagenet DIR --weights FILE): the paper's setting, 224×224 input with ImageNet normalisation,
mask sizes 224/28/14/7, K = 20, N = 15 (faithful mode), on a torchvision ResNet-50 or VGG19 whose state dict
FILE holds (torch.load weights_only); DIR holds images (ImageNet-val style; labels are not needed: each image's
top-1 class is explained). Writes Tables 1–3 to faithfulness_imagenet.md / .json.

Every explanation and score is cached per (model, method, mask size, settings) under --work, so a rerun (or a
run after a crash) recomputes only what is missing.

The parts: settings, units and their cache in benchmarks/faithfulness_units.py; the models and images in
benchmarks/faithfulness_subjects.py; what each section measures in benchmarks/faithfulness_measures.py; its
tables in benchmarks/faithfulness_report.py.

    python -m benchmarks.faithfulness --quick        # seconds: proves the script runs (temp work dir and output)
    python -m benchmarks.faithfulness                # CPU defaults (see --help)
    python -m benchmarks.faithfulness --imagenet /data/imagenet/val --weights resnet50.pth --arch resnet50
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks.common import RESULTS, ROOT, command_line, load_average, now, program, write_results
from benchmarks.faithfulness_measures import (
    CASCADES,
    ablation_units,
    main_json,
    main_units,
    mode_units,
    modes_json,
    sanity_rows,
    summary,
    truth_rows,
)
from benchmarks.faithfulness_report import (
    ablation_table,
    machine_lines,
    main_tables,
    models_table,
    modes_table,
    sanity_table,
    settings_lines,
    truth_table,
)
from benchmarks.faithfulness_subjects import imagenet_subject, synthetic_dataset, synthetic_subject
from benchmarks.faithfulness_units import LIBRARY_DEFAULTS, Config, Runner

# Quoted from the iGOS++ paper's tables (ImageNet, 5 000 images, the official AUC: docs/igos.md §7.2); compared in
# the ImageNet output only.
PAPER = {
    "resnet50": {"iGOS++": {224: (0.0328, 0.7261), 28: (0.0929, 0.7284), 7: (0.1810, 0.7332)},
                 "I-GOS": {224: (0.0420, 0.5846), 28: (0.1059, 0.5986), 7: (0.1607, 0.6632)},
                 "Mask": {224: (0.0468, 0.4962), 28: (0.1151, 0.5559), 7: (0.2259, 0.6003)},
                 "RISE": {224: (0.1196, 0.5637)}, "Integrated gradients": {224: (0.0907, 0.2921)},
                 "Grad-CAM": {7: (0.1675, 0.6521)}},
    "vgg19": {"iGOS++": {224: (0.0344, 0.6537), 28: (0.0796, 0.7066), 14: (0.1123, 0.7061)},
              "I-GOS": {224: (0.0336, 0.5246), 28: (0.0899, 0.5701), 14: (0.1213, 0.6387)},
              "Mask": {224: (0.0482, 0.4158), 28: (0.1056, 0.5335), 14: (0.1753, 0.5647)},
              "RISE": {224: (0.1082, 0.5139)}, "Integrated gradients": {224: (0.0663, 0.2551)},
              "Grad-CAM": {14: (0.1527, 0.5938)}},
}
PAPER_ABLATION = {"I-GOS": (0.0420, 0.5846, 0.1059, 0.5986), "Insertion": (0.0760, 0.6192, 0.1321, 0.7231),
                  "I-GOS + Insertion (naïve)": (0.0322, 0.6175, 0.2037, 0.5103),
                  "iGOS++ (no noise)": (0.0490, 0.5943, 0.0904, 0.7108),
                  "iGOS++ (fixed step size)": (0.0332, 0.5695, 0.1052, 0.7060),
                  "iGOS++ (no BTV)": (0.0245, 0.6742, 0.0813, 0.6825), "iGOS++": (0.0328, 0.7261, 0.0929, 0.7284)}

# Defaults for the 2 shared CPU cores, from a calibration run (6 images per model, 1-min load average ~3.5, 1
# thread): 36-px input, the smallest at which the ResNets' last layer keeps 2×2 cells for Grad-CAM; K = 4, N = 2;
# all 20 maps of one image with both metrics took ~2 s (small CNN), ~15 s (ResNet-18) and ~30 s (ResNet-50); the
# paper's metric (~50 steps a curve) is about half of it. 1 thread: with other processes on the cores, 2 OpenMP
# threads ran a ResNet-18 forward 2× slower (15.5 vs 7.8 ms/image at 48 px). --quick: seconds.
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "image_size": 36, "dataset_size": 72, "n_train": 300, "images": 100, "archs": "small_cnn,resnet18,resnet50",
    "epochs": "small_cnn:12,resnet18:10,resnet50:10", "iterations": 4, "ig_steps": 2, "mask_iterations": 30,
    "rise_masks": 300, "ig_baseline_steps": 10, "mode": "fast", "mask_sizes": "7,14,28", "rise_metric_steps": 18,
    "ablation_images": 30, "modes_images": 30, "sanity_images": 16, "focus_arch": "resnet18", "explain_batch": 25,
    "forward_batch": 256, "threads": 1,
}
QUICK: dict[str, Any] = {
    "image_size": 32, "dataset_size": 64, "n_train": 36, "images": 2, "archs": "small_cnn,resnet18",
    "focus_arch": "small_cnn",
    "epochs": "small_cnn:1,resnet18:1", "igos_metric_steps": 8, "rise_metric_steps": 8, "iterations": 2,
    "ig_steps": 2, "mask_iterations": 3, "rise_masks": 16, "ig_baseline_steps": 2,
    "ablation_images": 2, "modes_images": 2, "sanity_images": 2, "explain_batch": 2, "forward_batch": 64,
    "threads": 1,
}
# The paper's settings (docs/igos.md §5.1; the iGOS++ paper's tables): library defaults for every method,
# faithful (official) update rule.
IMAGENET_DEFAULTS: dict[str, Any] = {
    "image_size": 224, "images": 5000, "iterations": 20, "ig_steps": 15, "mask_iterations": 300, "rise_masks": 4000,
    "ig_baseline_steps": 20, "mode": "faithful", "mask_sizes": "7,14,28", "ablation_images": 5000,
    "explain_batch": 16, "forward_batch": 128, "threads": 2,
}


# ----------------------------------------------------------------------------------------------- the runs


def run_synthetic(cfg: Config, runner: Runner) -> tuple[list[str], dict[str, Any]]:
    """The synthetic path: train the models, run every section; (markdown body, numbers for the JSON)."""
    root = synthetic_dataset(cfg, runner)
    subjects = [synthetic_subject(cfg, runner, root, arch) for arch in cfg.archs]
    focus = next(s for s in subjects if s.name == cfg.focus_arch)
    main = {s.name: main_units(runner, s) for s in subjects}
    ablation = ablation_units(runner, focus, main[focus.name])
    modes = modes_json(mode_units(runner, focus))
    paper_k_n = {"iterations": LIBRARY_DEFAULTS["iterations"], "ig_steps": LIBRARY_DEFAULTS["ig_steps"]}
    modes_at_defaults = modes_json(mode_units(runner, focus, paper_k_n))
    truth = {s.name: truth_rows(s, main[s.name], cfg) for s in subjects}
    sanity = sanity_rows(runner, focus, main[focus.name])
    lines = ["## Models", "", "Trained here on the synthetic `train` split (datasets.synthetic.generate, "
             f"{cfg.n_train} images at {cfg.dataset_size} px, default shortcut 0.9, seed {cfg.seed}; validation "
             "carved by patient), Adam with a one-cycle schedule, seeded; evaluated on the first "
             f"{cfg.images} `test` images. Training seconds were measured when the checkpoint was trained (a "
             "rerun reuses the cached checkpoint)."]
    lines += models_table(subjects, cfg)
    lines += ["", "## Insertion / deletion (the paper's Tables 1–2)", "",
              "Lower deletion and higher insertion are better. These are not the paper's ImageNet numbers (other "
              "data, models and input size); compare methods within a table."]
    for s in subjects:
        lines += ["", f"### {s.name}", *main_tables(s, main[s.name], cfg)]
    lines += ["", "## Ablations (the paper's Table 3)", *ablation_table(ablation, cfg, focus)]
    lines += ["", "## Fast vs faithful iGOS++", "", "With the run's K and N (those of every table here):",
              *modes_table(modes, cfg, focus, cfg.iterations, cfg.ig_steps), "",
              "With the library's defaults, the paper's K and N (what `igos.explain` does unless told otherwise):",
              *modes_table(modes_at_defaults, cfg, focus, paper_k_n["iterations"], paper_k_n["ig_steps"])]
    lines += ["", "## Ground truth: lesion, text and the text-removal counterfactual", "",
              "Shares of each map's mass (upsampled to the dataset's "
              f"{cfg.dataset_size} px as pipeline.audit does): on the lesion (images with one), and inside the true "
              "text boxes grown by 2 px (images with text), split by whether the model's prediction changes when the "
              "text alone is removed (the generator's text-free copy). A method that shows the evidence the model "
              "uses should put more mass on text where removing the text flips the prediction (AUC > 0.5). Mask "
              "methods at 28×28, Grad-CAM at its layer, the others at the input size."]
    for s in subjects:
        lines += ["", f"### {s.name}", *truth_table(truth[s.name], s)]
    lines += ["", "## Sanity check: cascading model-parameter randomisation (Adebayo et al. 2018)"]
    lines += sanity_table(sanity, focus, cfg)
    numbers = {"models": {s.name: {**s.info, "gradcam_size": s.gradcam_size} for s in subjects},
               "main": {s.name: main_json(main[s.name]) for s in subjects},
               "ablation": {f"{label} @ {size}": {k: summary(v) for k, v in u.scores.items()}
                            for (label, size), u in ablation.items()},
               "modes": modes, "modes_at_library_defaults": modes_at_defaults, "truth": truth, "sanity": sanity}
    return lines, numbers


def run_imagenet(cfg: Config, runner: Runner) -> tuple[list[str], dict[str, Any]]:
    """The ImageNet path: Tables 1–3 on the torchvision model, beside the paper's numbers; (markdown body, numbers)."""
    subject = imagenet_subject(cfg)
    main = main_units(runner, subject)
    ablation = ablation_units(runner, subject, main)
    lines = ["## Model and images", "", f"torchvision `{cfg.arch}(weights=None)` with the state dict `{cfg.weights}`; "
             f"{len(subject.images)} images of `{cfg.imagenet}` (a seeded sample when the folder holds more), shorter "
             f"side to {round(cfg.image_size * 256 / 224)} px, centre crop {cfg.image_size}², ImageNet normalisation; "
             f"each image's top-1 class explained; Grad-CAM layer {subject.gradcam_size}×{subject.gradcam_size}.",
             "", "## Insertion / deletion (the paper's Tables 1–2)", "", f"### {cfg.arch}"]
    lines += main_tables(subject, main, cfg)
    if cfg.arch in PAPER:
        lines += ["", f"The paper's numbers for {cfg.arch} (the iGOS++ paper's tables: 5 000 ImageNet images, the "
                  "official AUC of docs/igos.md §7.2, which differs from the trapezoid here by up to ±0.02; compare "
                  "with protocol `igos`):", "",
                  "| method | size | del | ins |", "|---|---:|---:|---:|"]
        lines += [f"| {label} | {size} | {d:.4f} | {i:.4f} |" for label, by_size in PAPER[cfg.arch].items()
                  for size, (d, i) in by_size.items()]
    lines += ["", "## Ablations (the paper's Table 3)", *ablation_table(ablation, cfg, subject)]
    lines += ["", "The paper's Table 3 (ResNet50; 224 del, 224 ins, 28 del, 28 ins):", "",
              "| variant | 224 del | 224 ins | 28 del | 28 ins |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + " |"
              for label, values in PAPER_ABLATION.items()]
    numbers = {"model": {"arch": cfg.arch, **subject.info, "gradcam_size": subject.gradcam_size},
               "main": {cfg.arch: main_json(main)},
               "ablation": {f"{label} @ {size}": {k: summary(v) for k, v in u.scores.items()}
                            for (label, size), u in ablation.items()}}
    return lines, numbers


# ----------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> Config:
    """Command line → Config, with the defaults of the chosen path (synthetic, --quick, --imagenet)."""
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__.split("\n\n")[0],
                                     epilog=f"synthetic defaults: {SYNTHETIC_DEFAULTS}; --quick: {QUICK}; "
                                            f"--imagenet defaults: {IMAGENET_DEFAULTS}")
    parser.add_argument("--quick", action="store_true", help="tiny settings (seconds); temp work dir and output "
                        "unless --work / --out")
    parser.add_argument("--work", type=Path, help="cache of data, checkpoints and units (default runs/faithfulness)")
    parser.add_argument("--out", type=Path, help="markdown output; the .json goes beside it (default "
                        "benchmarks/results/faithfulness.md, faithfulness_imagenet.md with --imagenet)")
    parser.add_argument("--imagenet", type=Path, help="a folder of images: run the paper's ImageNet setting")
    parser.add_argument("--weights", type=Path, help="torchvision state dict for --imagenet (torch.load weights_only)")
    parser.add_argument("--arch", default="resnet50", choices=("resnet50", "vgg19", "resnet18"),
                        help="torchvision architecture of --weights (resnet18: for small stand-ins)")
    parser.add_argument("--archs", help="synthetic: architectures to train (pipeline.models), comma-separated")
    parser.add_argument("--focus-arch", help="synthetic: the model of the ablations, fast vs faithful and the sanity "
                        "check (default resnet18; --quick: small_cnn)")
    parser.add_argument("--epochs", help="synthetic: training epochs per architecture, e.g. resnet18:10,resnet50:8")
    parser.add_argument("--image-size", type=int, help="model input side in pixels")
    parser.add_argument("--dataset-size", type=int, help="synthetic: side of the generated films (ground truth)")
    parser.add_argument("--n-train", type=int, help="synthetic: training films")
    parser.add_argument("--images", type=int, help="images of the main tables")
    for name in ("iterations", "ig-steps", "mask-iterations", "rise-masks", "ig-baseline-steps", "ablation-images",
                 "modes-images", "sanity-images", "explain-batch", "forward-batch", "threads"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--mode", choices=("fast", "faithful"), help="iGOS family mode of the main tables")
    parser.add_argument("--mask-sizes", help="mask sides besides the input size, comma-separated (default 7,14,28)")
    parser.add_argument("--igos-metric-steps", type=int, help="protocol igos: steps (default the paper's ⌊P/50⌋ "
                        "rule, docs/igos.md §7.1)")
    parser.add_argument("--rise-metric-steps", type=int, help="protocol rise: steps (default the input side, as "
                        "RISE's 224 steps at 224 px)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.imagenet is None) != (args.weights is None):
        parser.error("--imagenet and --weights go together")
    if args.imagenet is not None and not (args.imagenet.is_dir() and args.weights.is_file()):
        parser.error(f"--imagenet must be a folder and --weights a file: {args.imagenet}, {args.weights}")
    defaults = dict(IMAGENET_DEFAULTS if args.imagenet else SYNTHETIC_DEFAULTS)
    if args.quick:
        defaults.update(QUICK)

    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return defaults.get(name) if value is None else value

    image_size = int(pick("image_size"))
    sizes = sorted({image_size, *(int(s) for s in str(pick("mask_sizes")).split(",") if int(s) < image_size)},
                   reverse=True)
    archs = [args.arch] if args.imagenet else str(pick("archs")).split(",")
    epochs = {a: int(e) for a, e in (item.split(":") for item in str(pick("epochs") or "").split(",") if item)}
    focus = args.arch if args.imagenet else str(pick("focus_arch"))
    if not args.imagenet:
        if focus not in archs or focus not in CASCADES:
            parser.error(f"--focus-arch must be one of --archs with a randomisation cascade ({', '.join(CASCADES)})")
        if missing := [a for a in archs if a not in epochs]:
            parser.error(f"--epochs lacks {', '.join(missing)}")
    scratch = Path(tempfile.gettempdir())
    stem = "faithfulness_imagenet" if args.imagenet else "faithfulness"
    work = args.work or (Path(tempfile.mkdtemp(prefix="faithfulness-quick-")) if args.quick
                         else ROOT / "runs" / "faithfulness")
    return Config(
        imagenet=args.imagenet, weights=args.weights, arch=args.arch, work=work,
        out=args.out or (scratch / f"{stem}_quick.md" if args.quick else RESULTS / f"{stem}.md"), quick=args.quick,
        image_size=image_size, dataset_size=int(pick("dataset_size") or image_size), n_train=int(pick("n_train") or 0),
        images=int(pick("images")), archs=archs, epochs=epochs, iterations=int(pick("iterations")),
        ig_steps=int(pick("ig_steps")), mask_iterations=int(pick("mask_iterations")),
        rise_masks=int(pick("rise_masks")), ig_baseline_steps=int(pick("ig_baseline_steps")), mode=str(pick("mode")),
        mask_sizes=sizes, ablation_images=int(pick("ablation_images")), modes_images=int(pick("modes_images") or 0),
        sanity_images=int(pick("sanity_images") or 0), focus_arch=focus,
        igos_metric_steps=pick("igos_metric_steps"), rise_metric_steps=int(pick("rise_metric_steps") or image_size),
        explain_batch=int(pick("explain_batch")), forward_batch=int(pick("forward_batch")),
        threads=int(pick("threads")), seed=args.seed,
        command=command_line(__file__, argv))


def finite_or_none(value: Any) -> Any:
    """JSON-safe copy: NaN and inf become null, numpy/torch scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic | Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its markdown and JSON."""
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    runner = Runner(cfg)
    load_start = load_average()
    run: Callable[[Config, Runner], tuple[list[str], dict[str, Any]]] = run_imagenet if cfg.imagenet else run_synthetic
    body, numbers = run(cfg, runner)
    seconds = time.perf_counter() - runner.started
    title = "# Faithfulness: insertion/deletion, ablations" + (
        " on ImageNet (the paper's setting)" if cfg.imagenet else ", ground truth and sanity on synthetic radiographs")
    lines = [title + (" (--quick: tiny settings, not a measurement to quote)" if cfg.quick else ""), ""]
    lines += machine_lines(cfg, (load_start, load_average()), seconds) + settings_lines(cfg) + [""] + body
    report = "\n".join(lines) + "\n"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()}
    document = {"settings": settings, "torch": torch.__version__, "threads": torch.get_num_threads(),
                "cpu_cores": os.cpu_count(), "date": now(), "seconds": seconds, **numbers}
    write_results(cfg.out, finite_or_none(document), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
