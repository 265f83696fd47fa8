"""The faithfulness benchmark's report (`python -m benchmarks.faithfulness`): the markdown tables of each section
(models, insertion/deletion per protocol, ablations, fast vs faithful, ground truth, sanity check) and the lines
that name the machine and every setting."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from typing import Any

import torch
import torchvision

from benchmarks.common import cpu_model, now
from benchmarks.faithfulness_measures import (
    ABLATIONS,
    CASCADES,
    MODES_TOLERANCE,
    SANITY_MAX_RHO,
    ablation_sizes,
    summary,
)
from benchmarks.faithfulness_units import LIBRARY_DEFAULTS, METHODS, PROTOCOLS, Config, Subject, Unit


def cell(stats: dict[str, float], digits: int = 4) -> str:
    """`mean ± std` of a summary (– when it has no finite value)."""
    if not math.isfinite(stats["mean"]):
        return "–"
    std = f" ± {stats['std']:.3f}" if math.isfinite(stats["std"]) else ""
    return f"{stats['mean']:.{digits}f}{std}"


def main_tables(subject: Subject, units: dict[tuple[str, int], Unit], cfg: Config) -> list[str]:
    """Per protocol a table like the paper's Tables 1–2 (columns: sizes, descending), and one of explain times."""
    sizes = sorted({size for _, size in units}, reverse=True)
    head = "| method | " + " | ".join(f"{s} del | {s} ins" for s in sizes) + " |"
    rule = "|---|" + "---:|---:|" * len(sizes)
    lines = []
    for protocol in PROTOCOLS:
        lines += ["", f"Protocol `{protocol}` ({PROTOCOL_NOTES[protocol]}); {subject.name}, {len(subject.images)} "
                  "images, mean ± std over images:", "", head, rule]
        for label, method in METHODS:
            cells = []
            for size in sizes:
                unit = units.get((method, size))
                cells += ["–", "–"] if unit is None else [cell(summary(unit.scores[f"{protocol}/{kind}"]))
                                                          for kind in ("deletion", "insertion")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Explanation wall time, s / image ({subject.name}; batches of {cfg.explain_batch} images, "
              "metrics excluded):", "", "| method | " + " | ".join(f"{s}×{s}" for s in sizes) + " |",
              "|---|" + "---:|" * len(sizes)]
    for label, method in METHODS:
        times = [units[method, s].seconds / len(units[method, s].targets) if (method, s) in units else None
                 for s in sizes]
        lines.append(f"| {label} | " + " | ".join("–" if t is None else f"{t:.3f}" for t in times) + " |")
    return lines


PROTOCOL_NOTES = {
    "igos": "the paper's, docs/igos.md §7.1: cells of the mask grid ranked, heavy-blur baseline for both curves, soft "
            "cell borders; trapezoid AUC incl. the 0 % point (docs/igos.md §7.2)",
    "rise": "docs/igos.md §7.3: pixels ranked at input resolution, deletion to zeros, insertion from an 11×11 σ 5 blur",
}


def ablation_table(units: dict[tuple[str, int], Unit], cfg: Config, subject: Subject) -> list[str]:
    """Table 3: each ablation's deletion and insertion at 28×28 and the input size."""
    sizes = ablation_sizes(cfg)
    lines = ["", f"{subject.name}, the first {cfg.ablation_images} images, protocol `igos`, mean ± std:", "",
             "| variant | " + " | ".join(f"{s} del | {s} ins" for s in sizes) + " |",
             "|---|" + "---:|---:|" * len(sizes)]
    for label, _, _ in ABLATIONS:
        cells = [cell(summary(units[label, s].scores[f"igos/{kind}"]))
                 for s in sizes for kind in ("deletion", "insertion")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def modes_table(numbers: dict[str, Any], cfg: Config, subject: Subject, iterations: int, ig_steps: int
                ) -> list[str]:
    """iGOS++ fast vs faithful per protocol: both modes' AUCs, the paired differences, the verdict, s / image."""
    size = min(28, cfg.image_size)
    lines = ["", f"iGOS++ on {subject.name}, {size}×{size}, the first {cfg.modes_images} images (same seeds), "
             f"K = {iterations}, N = {ig_steps}. Target: fast within {MODES_TOLERANCE} of faithful on both "
             "insertion and deletion (the mean paired difference; its 95 % interval in brackets).", "",
             "| protocol | faithful del | fast del | Δ del (fast − faithful) | faithful ins | fast ins | Δ ins "
             "| within 0.01 on both? | s / image faithful | s / image fast |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for protocol in PROTOCOLS:
        cells = []
        for kind in ("deletion", "insertion"):
            d = numbers["difference"][f"{protocol}/{kind}"]
            cells += [cell(numbers["faithful"][f"{protocol}/{kind}"]), cell(numbers["fast"][f"{protocol}/{kind}"]),
                      f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"]
        verdict = "**pass**" if numbers["passes"][protocol] else "**FAIL**"
        lines.append(f"| {protocol} | " + " | ".join(cells) + f" | {verdict} | "
                     f"{numbers['faithful']['seconds_per_image']:.2f} | {numbers['fast']['seconds_per_image']:.2f} |")
    return lines


def truth_table(rows: list[dict[str, Any]], subject: Subject) -> list[str]:
    """Per method: the maps' mass on lesion and text, and how well the text share predicts a flip."""
    truth = subject.truth
    assert truth is not None
    n = len(truth.flipped)
    lines = ["", f"{subject.name}: {int(truth.flipped.sum())} of {n} predictions change when the text alone is "
             f"removed (test accuracy {subject.info['test_accuracy']:.3f}, on the text-free copies "
             f"{truth.clean_accuracy:.3f}); {int(truth.lesion.any(axis=(1, 2)).sum())} images have a lesion. "
             "Mean ± std over images.", "",
             "| method | size | lesion mass share | pointing hit (max on lesion) | text mass share | text share, "
             "prediction flips | text share, no flip | ROC AUC text share → flip |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        size = "–" if row["size"] is None else f"{row['size']}×{row['size']}"
        auc = "–" if not math.isfinite(row["flip_auc"]) else f"{row['flip_auc']:.3f}"
        lines.append(f"| {row['method']} | {size} | " + " | ".join(
            cell(row[k], 3) for k in ("lesion_mass", "lesion_pointing", "text_mass", "text_flipped", "text_kept"))
            + f" | {auc} |")
    return lines


def sanity_table(rows: list[dict[str, Any]], subject: Subject, cfg: Config) -> list[str]:
    """Per method: ρ between trained and randomised maps after each cascade step, and whether it passes."""
    names = [name for name, _ in CASCADES[subject.name]]
    lines = ["", f"{subject.name}, the first {min(cfg.sanity_images, cfg.images)} images: mean Spearman ρ (± std) "
             "between the trained model's map and the map of the model with the layers re-initialised cumulatively "
             "from the logits down (reset_parameters, seeded; BatchNorm statistics reset too); maps upsampled to "
             f"{cfg.image_size}×{cfg.image_size}; the randomised models explain the trained model's top-1 class. "
             f"Passes: |mean ρ| < {SANITY_MAX_RHO} at every step (threshold fixed before the run; |ρ|, so an "
             "inverted map does not pass) and ρ defined at one step at least; a constant map (ρ undefined, counted "
             "as 'const.') is left out of the mean. 'Other seed': ρ "
             "between two trained-model maps with different seeds (chance agreement of a stochastic method).", "",
             "| method | size | other seed | " + " | ".join(names) + " | constant maps | passes |",
             "|---|---:|---:|" + "---:|" * len(names) + "---:|---|"]
    for row in rows:
        own = cell(row["self"], 3) if "self" in row else "–"
        lines.append(f"| {row['method']} | {row['size']}×{row['size']} | {own} | "
                     + " | ".join(sanity_cell(row["steps"][name]) for name in names)
                     + f" | {row['constant_maps']} | {'yes' if row['passes'] else '**no**'} |")
    return lines


def sanity_cell(step: dict[str, float]) -> str:
    """ρ mean ± std over the defined images, and how many maps were constant (ρ undefined)."""
    text = cell(step, 3)
    return text + (f" ({step['constant']} const.)" if step["constant"] else "")


def models_table(subjects: Sequence[Subject], cfg: Config) -> list[str]:
    """One row per trained model: input, training, accuracies, flips, Grad-CAM layer."""
    lines = ["", "| model | input | train images | epochs (selected) | validation macro-F1 | test accuracy | "
             "accuracy, text removed | predictions that flip without text | Grad-CAM layer | training s |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in subjects:
        i = s.info
        lines.append(f"| {s.name} | 1×{cfg.image_size}×{cfg.image_size} | {i['train_images']} | {i['epochs']} "
                     f"({i['selected_epoch']}) | {i['validation']['macro_f1']:.3f} | {i['test_accuracy']:.3f} | "
                     f"{i['clean_accuracy']:.3f} | {i['flipped']} / {i['images']} | {s.gradcam_size}×{s.gradcam_size}"
                     f" | {i['train_seconds']} |")
    return lines


def machine_lines(cfg: Config, load: tuple[float, float], seconds: float) -> list[str]:
    """The header lines: date, command, machine and versions, load, wall time."""
    return [
        f"- date: {now()}",
        f"- command: `{cfg.command}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), torchvision {torchvision.__version__}, python {platform.python_version()}; 1-min load average "
        f"at start / end {load[0]:.2f} / {load[1]:.2f} (other processes sharing the cores inflate every timing)",
        f"- total wall time: {seconds:.0f} s ({seconds / 60:.1f} min), including cached units' load time; "
        f"cache and checkpoints in `{cfg.work}`",
    ]


def settings_lines(cfg: Config) -> list[str]:
    """Every setting, and where it differs from the paper default."""
    # The ImageNet path reproduces the official code, whose update rule is the faithful mode.
    reference = {**LIBRARY_DEFAULTS, "mode": "faithful"} if cfg.imagenet else LIBRARY_DEFAULTS
    differs = [f"{name} {getattr(cfg, name)} (paper/library: {default})" for name, default in reference.items()
               if getattr(cfg, name) != default]
    counts = f"{cfg.images} (main tables), {cfg.ablation_images} (ablations)" + (
        "" if cfg.imagenet else f", {cfg.modes_images} (fast vs faithful), {cfg.sanity_images} (sanity)")
    rise_note = "the library's 224" if cfg.rise_metric_steps == 224 else \
        f"{cfg.rise_metric_steps} (one step = {cfg.image_size}²/{cfg.rise_metric_steps} pixels; RISE's 224 at 224²)"
    lines = [
        f"- input {cfg.image_size}×{cfg.image_size}; mask sizes {', '.join(map(str, cfg.mask_sizes))}; images: "
        f"{counts}; image i explained with seed {cfg.seed} + i; seed {cfg.seed} for data, training and "
        "randomisation",
        f"- iGOS family: K = {cfg.iterations} iterations, N = {cfg.ig_steps} IG steps, mode `{cfg.mode}` in the main "
        "tables and ablations, λ1 1 (10 at the input size), λ2 20, noise 0.2, α0 1000 (library defaults); Mask: "
        f"{cfg.mask_iterations} Adam iterations; RISE: {cfg.rise_masks} masks (7×7 cells, p 0.5); integrated "
        f"gradients: {cfg.ig_baseline_steps} steps from the blur baseline; explain calls of {cfg.explain_batch} "
        f"images, forward chunks of {cfg.forward_batch}, channels-last on the CPU (same values)",
        "- metric steps: protocol `igos` "
        + ("the paper's ⌊P/50⌋ cells per step (docs/igos.md §7.1)" if cfg.igos_metric_steps is None
           else f"{cfg.igos_metric_steps} steps")
        + f", protocol `rise` {rise_note}; softmax probability of the explained (top-1) class",
        "- **differs from the paper/library defaults**: " + ("; ".join(differs) if differs else "nothing"),
    ]
    return lines


