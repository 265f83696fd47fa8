"""Do iGOS++ / I-GOS in fast and faithful mode agree on the known-evidence images of the tests?

Uses the hand-set CNN of the igos tests (benchmarks.common.WindowEvidenceNet: its class-1 score reads one 16×16
window of a 64×64 image that also holds an equally bright distractor). For each method, mode and seed it
reports the share of the top-5 % salient pixels inside the window, and between the fast and faithful
maps of the same image and seed: Spearman ρ, Pearson r and the overlap (IoU) of their top-5 % cells.
Writes benchmarks/results/igos_modes_agreement.md.

    .venv/bin/python -m benchmarks.igos_modes_agreement
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from scipy.stats import pearsonr, spearmanr

import igos
from benchmarks.common import (
    RESULTS,
    WindowEvidenceNet,
    evidence_images,
    program,
    top_fraction_inside,
    window_mask,
    write_report,
)

SIZE, WINDOW = (64, 64), (16, 32, 16, 16)
SEEDS = (0, 1, 2)
OUT = RESULTS / "igos_modes_agreement.md"


def top_overlap(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.05) -> float:
    """IoU of the top-`fraction` cells of two maps (h, w)."""
    count = max(1, round(fraction * a.numel()))
    top_a, top_b = set(a.flatten().topk(count).indices.tolist()), set(b.flatten().topk(count).indices.tolist())
    return len(top_a & top_b) / len(top_a | top_b)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog=program(__file__), description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)  # --help only
    torch.set_num_threads(1)
    model = WindowEvidenceNet(SIZE, WINDOW).double()
    images = evidence_images(4, SIZE, WINDOW)
    inside = window_mask(SIZE, WINDOW)
    lines = ["# fast vs faithful on the known-evidence images", "",
             f"Hand-set window CNN, {len(images)} images 64×64, mask 28×28, K = 20, N = 15, seeds {SEEDS}; "
             "per-image values averaged (min in brackets).", "",
             "| method | top-5 % inside window: faithful | fast | Spearman ρ fast vs faithful | Pearson r "
             "| top-5 % IoU |", "|---|---|---|---|---|---|"]
    for method in ("igos++", "igos"):
        rows: dict[str, list[float]] = {k: [] for k in ("faithful", "fast", "rho", "r", "iou")}
        for seed in SEEDS:
            maps = {mode: igos.explain(model, images, method=method, mode=mode, seed=seed * 100)
                    for mode in ("faithful", "fast")}
            for mode, explanation in maps.items():
                rows[mode] += top_fraction_inside(explanation.upsample(), inside).tolist()
            for a, b in zip(maps["fast"].saliency, maps["faithful"].saliency, strict=True):
                rows["rho"].append(float(spearmanr(a.flatten(), b.flatten()).statistic))
                rows["r"].append(float(pearsonr(a.flatten(), b.flatten()).statistic))
                rows["iou"].append(top_overlap(a, b))
        cells = [f"{sum(v) / len(v):.3f} ({min(v):.3f})" for v in rows.values()]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Most cells of an I-GOS map are 0 up to ~1e-15, so its Spearman ρ ranks noise; Pearson r and the "
              "top-5 % overlap describe the agreement of the salient region."]
    report = "\n".join(lines) + "\n"
    print(report)
    write_report(OUT, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
