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

    try:
        config = QuickAuditConfig(n_explain=n_explain, seed=seed, igos_mode=mode)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    result = run_demo(out, config)
    table = result.table
    typer.echo(f"test accuracy {result.test_accuracy:.1%}; mean text share of saliency {table.text_share.mean():.1%}"
               f" on {table.text_area.mean():.1%} of the area; insertion {table.insertion_auc.mean():.3f}, "
               f"deletion {table.deletion_auc.mean():.3f}")
    typer.echo(f"wrote {out}/results.md, {out}/results.csv and {len(table)} heatmaps in {out}/figures/")


@app.command()
def synth(
    root: Annotated[Path, typer.Argument(help="Folder to write the synthetic COVIDx dataset into.")],
    n_train: Annotated[int, typer.Option(min=3, help="Training images.")] = 600,
    n_test: Annotated[int, typer.Option(min=3, help="Test images (test_decorrelated holds the same number).")] = 200,
    image_size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(min=0, help="Seed: the same seed writes the same files.")] = 0,
    shortcut: Annotated[float, typer.Option(min=0.0, max=1.0, help="How strongly the hospital (text) predicts the "
                                            "label in train and test (0: not at all, 1: always).")] = 0.9,
    repeat_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of patients with two images.")]
    = 0.25,
    overwrite: Annotated[bool, typer.Option(help="Replace a synthetic dataset already in ROOT.")] = False,
) -> None:
    """Write a synthetic COVIDx folder: train/, test/, test_decorrelated/, split files and ground truth."""
    import time

    from datasets.synthetic import generate

    total = n_train + 2 * n_test
    started = time.perf_counter()
    try:
        with typer.progressbar(length=total, label="rendering") as bar:
            generate(root, n_train=n_train, n_test=n_test, image_size=image_size, seed=seed, shortcut=shortcut,
                     repeat_fraction=repeat_fraction, overwrite=overwrite, progress=bar.update)
    except (FileExistsError, NotADirectoryError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    seconds = time.perf_counter() - started
    typer.echo(f"wrote {total} images ({n_train} train, {n_test} test, {n_test} test_decorrelated) of "
               f"{image_size}x{image_size} to {root} in {seconds:.1f} s ({total / seconds:.0f} images/s)")
