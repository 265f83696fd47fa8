"""The `cxr-audit` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.quick_audit import QuickAuditConfig

app = typer.Typer(help="Audit chest X-ray datasets for burned-in text shortcuts (iGOS++, COVIDx -> COVIDx++).",
                  no_args_is_help=True)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False) -> None:
    """cxr-audit."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run folder to write.")] = Path("runs/demo"),
    n_explain: Annotated[int, typer.Option(min=1, help="Test images to explain with iGOS++.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of data, training and iGOS++.")] = 0,
    mode: Annotated[str, typer.Option(help="iGOS++ mode: fast or faithful.")] = "fast",
) -> None:
    """Generate synthetic radiographs with a text shortcut, train a small CNN, explain it with iGOS++."""
    from flows.demo import run_demo

    result = run_demo(out, QuickAuditConfig(n_explain=n_explain, seed=seed, igos_mode=mode))
    table = result.table
    typer.echo(f"test accuracy {result.test_accuracy:.1%}; mean text share of saliency {table.text_share.mean():.1%}"
               f" on {table.text_area.mean():.1%} of the area; insertion {table.insertion_auc.mean():.3f}, "
               f"deletion {table.deletion_auc.mean():.3f}")
    typer.echo(f"wrote {out}/results.md, {out}/results.csv and {len(table)} heatmaps in {out}/figures/")
