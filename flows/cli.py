"""The `cxr-audit` command line.

Exit codes: 0 done; 1 the work failed (a message names the file and the fix); 2 bad usage, a bad
config or split files that cannot be used (nothing was done); 3 the run folder is in use by another process.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.progress import BarReporter, LineReporter, Reporter, stage_times, use_reporter
from flows.settings import use_offline_prefect
from flows.signals import end_children_on_termination

if TYPE_CHECKING:
    from flows.config import RunConfig

app = typer.Typer(help="Audit chest X-ray datasets for burned-in text shortcuts (iGOS++, COVIDx -> COVIDx++).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
LOG = logging.getLogger("cxr_audit")
DEMO_CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"  # in the checkout (editable install)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/).")]


_SHOW = {"progress": True}  # set by the callback: an audit's live stage progress (off with -q and -v)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Logs with timestamps and task names "
                                               "instead of progress bars.")] = False,
         quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress; results and errors only.")]
         = False) -> None:
    """cxr-audit."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=(
        "%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "%(levelname)s %(message)s"))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request to Prefect's API
    use_offline_prefect(verbose=verbose)
    _SHOW["progress"] = not (quiet or verbose)


def _fail(error: Exception, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code)


def _config(config_path: Path | None, **overrides: object) -> RunConfig:
    """The validated config; exit code 2 (nothing done) on a bad one."""
    from flows.config import ConfigError, load_config

    try:
        return load_config(config_path, **overrides)
    except ConfigError as error:
        raise _fail(error, 2) from error


def _audit(config_path: Path | None, **overrides: object) -> None:
    """Load and validate the config, run the flow, print the headline."""
    config = _config(config_path, **overrides)
    from datasets.errors import PatientLeakError, SplitFileError
    from flows.audit import run_audit
    from flows.rundir import RunInUseError
    from flows.summary import percent
    from pipeline.clean import CleanError

    end_children_on_termination()  # Prefect's temporary server and Dask's workers die with this process
    reporter = _progress_reporter()
    first = len(stage_times())
    started = time.perf_counter()
    try:
        summary = run_audit(config)
    except RunInUseError as error:
        raise _fail(error, 3) from error
    except (SplitFileError, PatientLeakError, CleanError) as error:  # the dataset cannot be audited as given
        raise _fail(error, 2) from error
    except (OSError, ValueError, RuntimeError) as error:
        raise _fail(error) from error
    finally:
        if isinstance(reporter, BarReporter):
            reporter.close()
    if _SHOW["progress"]:
        report = [item for item in stage_times(first) if item.name == "report"]
        typer.echo(_stage_table(config.run_dir / "timings.csv", report[0].seconds if report else None), err=True)
    a, b = summary["a"]["covid_recall"], summary["b"]["covid_recall"]
    for split in a:
        p_value = summary["mcnemar_p"].get(split)
        typer.echo(f"COVID-19 recall on {split}: A {percent(a[split])} -> B {percent(b[split])}"
                   + (f" (McNemar p = {p_value:.2g})" if p_value is not None else ""))
    typer.echo(f"text share of iGOS++ saliency: A {percent(summary['text_share_a'])}, "
               f"B {percent(summary['text_share_b'])}")
    report = config.run_dir / "report.html"
    typer.echo(f"done in {time.perf_counter() - started:.0f} s; report: {report if report.is_file() else '(off)'}")


def _progress_reporter() -> Reporter | None:
    """Show the audit's stages: bars on a terminal, a line per stage (and every 30 s) elsewhere; none with -q/-v
    (-v logs the same lines with timestamps)."""
    if not _SHOW["progress"]:
        return None
    reporter = BarReporter() if sys.stderr.isatty() else LineReporter(lambda line: typer.echo(line, err=True))
    use_reporter(reporter)
    return reporter


def _stage_table(timings_csv: Path, report_seconds: float | None) -> str:
    """The run's timings.csv (the stages, "other" and the total of summary.json) as text, and the report's time,
    which comes after the total."""
    import pandas as pd

    timings = pd.read_csv(timings_csv)
    width = max(len(name) for name in timings["stage"])
    lines = [f"  {row.stage:<{width}} {row.seconds:8.1f} s" for row in timings.itertuples()]
    if report_seconds is not None:
        lines.append(f"  (then the report: {report_seconds:.1f} s)")
    return "\n".join(["time per stage (timings.csv):", *lines])


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run folder to write.")] = Path("runs/demo"),
    config: ConfigOption = None,
    dask_workers: Annotated[int | None, typer.Option(min=1, help="Run per-image work on a local Dask cluster.")]
    = None,
) -> None:
    """The whole audit on generated synthetic radiographs whose text predicts the label (configs/demo.yaml)."""
    _audit(config or DEMO_CONFIG, run_dir=out, **{"runner.dask_workers": dask_workers})


@app.command()
def run(
    data: Annotated[Path, typer.Option(help="COVIDx folder: split files and image folders.")],
    train_split: Annotated[str, typer.Option(help="Training split file, relative to --data.")],
    test_split: Annotated[list[str], typer.Option(help="Test split file(s), relative to --data; the first one is "
                                                       "audited.")],
    out: Annotated[Path, typer.Option(help="Run folder to write (outside --data).")] = Path("runs/audit"),
    config: ConfigOption = None,
    dask_workers: Annotated[int | None, typer.Option(min=1, help="Local Dask cluster of N worker processes.")] = None,
    dask_address: Annotated[str | None, typer.Option(help="An existing Dask scheduler, tcp://host:port.")] = None,
) -> None:
    """The whole audit on a real COVIDx folder (PNG/JPG/DICOM)."""
    tests: dict[str, str] = {}
    for name in test_split:  # a split is named by its file's whole stem: test_COVIDx9A and test_COVIDx9B differ
        stem = Path(name).stem
        if stem in tests:
            raise _fail(ValueError(f"--test-split {name} and {tests[stem]} would both be the split {stem!r}: "
                                   "give each test split file its own name"), 2)
        tests[stem] = name
    _audit(config, run_dir=out, **{"data.root": data.resolve(), "data.train_split": train_split,
                                   "data.test_splits": tests, "data.audit_split": next(iter(tests)),
                                   "runner.dask_workers": dask_workers, "runner.dask_address": dask_address})


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
    from datasets.synthetic import generate

    total = n_train + 2 * n_test
    started = time.perf_counter()
    try:
        with typer.progressbar(length=total, label="rendering") as bar:
            generate(root, n_train=n_train, n_test=n_test, image_size=image_size, seed=seed, shortcut=shortcut,
                     repeat_fraction=repeat_fraction, overwrite=overwrite, progress=bar.update)
    except (FileExistsError, NotADirectoryError, ValueError) as error:
        raise _fail(error) from error
    seconds = time.perf_counter() - started
    typer.echo(f"wrote {total} images ({n_train} train, {n_test} test, {n_test} test_decorrelated) of "
               f"{image_size}x{image_size} to {root} in {seconds:.1f} s ({total / seconds:.0f} images/s)")


@app.command()
def explain(
    image: Annotated[Path, typer.Argument(help="A radiograph: PNG, JPEG or DICOM.")],
    checkpoint: Annotated[Path, typer.Option(help="A classifier checkpoint (.safetensors, from a run's models/).")],
    out: Annotated[Path | None, typer.Option(help="Heatmap PNG to write (default: IMAGE name + _igos.png here).")]
    = None,
    mask_size: Annotated[int, typer.Option(min=2, help="iGOS++ mask side.")] = 28,
    iterations: Annotated[int, typer.Option(min=1, help="iGOS++ iterations.")] = 20,
    target: Annotated[str | None, typer.Option(help="Class to explain (default: the predicted one).")] = None,
) -> None:
    """One iGOS++ heatmap of one image for one checkpoint."""
    from flows.single import heatmap

    try:
        path, label, probability = heatmap(image, checkpoint, out or Path(f"{image.stem}_igos.png"),
                                           mask_size=mask_size, iterations=iterations, target=target)
    except (OSError, ValueError) as error:
        raise _fail(error) from error
    typer.echo(f"{image.name}: explained {label} (p = {probability:.3f}); heatmap {path}")


@app.command("detect-text")
def detect_text(
    images: Annotated[list[Path], typer.Argument(help="Radiographs (PNG, JPEG, DICOM) or folders of them.")],
    out: Annotated[Path, typer.Option(help="CSV of the boxes to write.")] = Path("detections.csv"),
    threshold: Annotated[float, typer.Option(min=0.01, max=1.0, help="CRAFT text threshold (paper: 0.7).")] = 0.7,
    canvas: Annotated[int, typer.Option(min=64, max=4096, help="Long side (px) the film is resized to for CRAFT: "
                                        "576 for films of about 1000 px and more, 1024 for small films.")] = 576,
    paper: Annotated[bool, typer.Option(help="The COVIDx++ paper's detector: CRAFT alone at 1024 px (no marker "
                                             "finder, no mirrored border); --threshold still applies.")] = False,
) -> None:
    """Find burned-in text (CRAFT with offline weights, and circled markers) and write one CSV row per image."""
    from flows.single import detect_images
    from pipeline.text import TextConfig

    config = (TextConfig.paper(text_threshold=threshold) if paper
              else TextConfig(text_threshold=threshold, long_side=canvas))
    try:
        table = detect_images(images, out, config=config)
    except (OSError, ValueError) as error:
        raise _fail(error) from error
    found = int((table.n_boxes > 0).sum())
    typer.echo(f"{len(table)} images, text in {found}, {int((table.status != 'ok').sum())} unreadable; wrote {out}")


@app.command()
def clean(
    src: Annotated[Path, typer.Argument(help="COVIDx folder to read (never written).")],
    dst: Annotated[Path, typer.Argument(help="New folder for COVIDx++ (outside SRC).")],
    split: Annotated[list[str], typer.Option(help="Split file(s) relative to SRC (image folder: the name before "
                                                  "the last underscore).")],
    method: Annotated[str, typer.Option(help="patch (default: copies matching film from nearby; least trace), texture "
                                             "(fine texture on a smooth fill), telea (the paper's), ns, biharmonic, "
                                             "or black (box fill, for comparison).")] = "patch",
    keep_laterality: Annotated[bool, typer.Option(help="Leave lone L/R markers in place.")] = False,
) -> None:
    """Build COVIDx++: detect burned-in text and inpaint it into a copy of the dataset, with a manifest."""
    from pipeline.clean import CleanConfig, CleanError, build_clean_dataset

    try:
        config = CleanConfig(method=method, keep_laterality=keep_laterality)
    except ValueError as error:
        raise _fail(error, 2) from error
    try:
        with typer.progressbar(length=0, label="cleaning", show_pos=True) as bar:
            manifest = build_clean_dataset(src, dst, split, config=config, progress=bar.update)
    except CleanError as error:
        raise _fail(error, 2) from error
    except (OSError, ValueError) as error:
        raise _fail(error) from error
    typer.echo(f"COVIDx++ at {dst}: {manifest.counts()}; manifest {manifest.path}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<id>).")]) -> None:
    """(Re-)render report.html and summary.md of a run from its files."""
    from reports import render

    typer.echo(f"wrote {render(_run_folder(run_dir))}")


def _run_folder(run_dir: Path) -> Path:
    """`run_dir` when it is a folder a run wrote; exit code 2 otherwise."""
    if not run_dir.is_dir():
        raise _fail(FileNotFoundError(f"{run_dir}: no such run folder"), 2)
    if not (run_dir / "config.yaml").is_file():
        raise _fail(FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml): give the folder a run "
                                      "wrote (cxr-audit run --out / demo --out)"), 2)
    return run_dir


@app.command()
def review(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<id>).")],
    carry_from: Annotated[Path | None, typer.Option(help="An earlier run of the same dataset: take over its "
                                                         "decisions on the films that are unchanged.")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: a free one).")] = 0,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open the page in the browser.")] = True,
    reviewer: Annotated[str | None, typer.Option(help="Name recorded with each decision (default: the OS "
                                                      "user).")] = None,
) -> None:
    """Review A's flagged and top-ranked films in the browser: mark each "relies on text", "does not" or "unsure"
    (saved to RUN_DIR/review/decisions.csv, with the film's sha256)."""
    import getpass
    import webbrowser

    from flows.review_app import bind, create_app, serve
    from flows.review_run import ReviewError, ReviewRun
    from reports.review import DECISIONS, DecisionsError, current_decisions

    try:
        opened = ReviewRun.open(_run_folder(run_dir), reviewer or getpass.getuser())
        if carry_from is not None:
            if _run_folder(carry_from).resolve() == run_dir.resolve():
                raise ReviewError(f"--carry-from {carry_from} is the run itself: its decisions count already")
            carried = opened.carry_from(carry_from)
            typer.echo(f"carried {len(carried)} decision(s) from {carry_from / DECISIONS}")
        decisions = current_decisions(run_dir)
    except (ReviewError, DecisionsError) as error:
        raise _fail(error, 2) from error
    try:
        sock = bind(port)
    except OSError as error:
        raise _fail(OSError(f"port {port} on 127.0.0.1: {error.strerror}: choose another --port"), 2) from error
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    typer.echo(f"{len(opened.films)} films of A's audit ({int(opened.films['flagged'].astype(bool).sum())} flagged); "
               f"{len(decisions.current)} decided, {len(decisions.stale)} to review again (the film changed); "
               f"decisions go to {run_dir / DECISIONS}")
    typer.echo(f"review at {url} (Ctrl-C stops)")
    if browser:
        webbrowser.open(url)
    serve(create_app(opened), sock)


@app.command()
def serve(
    config: ConfigOption = None,
    cron: Annotated[str, typer.Option(help="Cron schedule of the audit (default: nightly at 02:00).")] = "0 2 * * *",
    name: Annotated[str, typer.Option(help="Deployment name.")] = "nightly-dataset-audit",
) -> None:
    """Serve the audit as a scheduled Prefect deployment (needs a Prefect server: PREFECT_API_URL); each run
    reads the config file again and runs on the task runner it asks for (flows/deploy.py)."""
    _config(config)
    from flows.deploy import scheduled_audit

    typer.echo(f"serving {name!r} on cron {cron!r} (Ctrl-C stops)")
    scheduled_audit.serve(name=name, cron=cron, parameters={"config_file": str(config.resolve())} if config else {})
