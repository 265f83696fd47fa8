"""Running the fault run's kinds (`python -m benchmarks.faults`) and checking each one.

The work folder holds the source (`datasets.synthetic.generate` with the sizes of `TINY`, in `data`), tiny.yaml
and the uninterrupted baseline runs (one `cxr-audit run`, and one `cxr-audit demo` for the kinds on the synthetic
path), each reused when the same code and settings ran it. For each kind: a run folder (a copy of the baseline's
when the fault concerns a rerun, else a new one), the fault injected, the CLI run (exit code, seconds, first line
of stderr), the fault removed (the input restored, with a new mtime) and the same command run again. Checks: the
outcome the kind expects (exit code, the message naming the file, a `rejected.csv` row, ...); the rerun's outputs
equal the baseline's (benchmarks.faults_trial.differences); the source folder byte-identical. A kind refused
before any work (bad config, bad usage) must write nothing: the run without the fault is then the baseline run
itself. A run-folder kind damages a copy of the baseline and expects the next run to repair it, so that run is
the rerun.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.common import ROOT, TINY, migrate_prefect, tiny_yaml
from benchmarks.faults_trial import Kind, Run, Trial, differences, digests, merged

PACKAGES = ("igos", "datasets", "pipeline", "flows", "reports", "configs")  # what a baseline run depends on


def cli_environment(work: Path) -> dict[str, str]:
    """The CLI's environment: offline Prefect with one home in the work folder, one OpenMP thread."""
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    return env


def prepare(work: Path) -> None:
    """The source folder (kept when already there) and tiny.yaml in `work`."""
    from datasets.synthetic import generate

    if not (work / "data" / "synthetic.json").is_file():
        shutil.rmtree(work / "data", ignore_errors=True)
        generate(work / "data", **TINY["data.synthetic"])
    config = tiny_yaml(work / "tiny.yaml")
    config.write_text(yaml.safe_dump(merged(yaml.safe_load(config.read_text()), {"clean": {"checkpoint_every": 2}})))


def code_stamp(work: Path) -> str:
    """sha256 of the project's code and configs and of tiny.yaml: a baseline found in `work` is reused only
    when it was run by the same code with the same settings."""
    digest = hashlib.sha256((work / "tiny.yaml").read_bytes())
    for path in sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*")
                       if path.is_file() and "__pycache__" not in path.parts):
        digest.update(f"{path.relative_to(ROOT)}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def baseline(work: Path, demo: bool) -> float | None:
    """Run the uninterrupted run (`demo`: of `cxr-audit demo`) in `work` unless one by the same code is there;
    its seconds (None: reused)."""
    folder = work / ("baseline-demo" if demo else "baseline")
    stamp = code_stamp(work)
    if not (work / "prefect" / "prefect.db").is_file():
        migrate_prefect(work / "prefect")  # once, so that no run pays for the database migration
    stamped = (folder / "code.sha256").read_text() if (folder / "code.sha256").is_file() else ""
    if stamped == stamp and (folder / "run" / "summary.json").is_file():
        return None
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run = Trial(work, folder, folder / "run", cli_environment(work), demo_mode=demo).rerun()
    if run.code != 0:
        raise RuntimeError(f"the baseline run failed (exit {run.code}): {run.message}; logs in {folder}")
    (folder / "code.sha256").write_text(stamp)
    print(f"{folder.name}: {run.seconds} s", file=sys.stderr, flush=True)
    return run.seconds


def baselines(work: Path, kinds: Sequence[Kind]) -> dict[str, float | None]:
    """Run the baselines the kinds need: folder name → seconds (None: reused from an earlier run)."""
    needed = {"baseline": any(kind.folder in ("copy", "fresh") for kind in kinds),
              "baseline-demo": any(kind.folder == "demo" for kind in kinds)}
    return {name: baseline(work, name == "baseline-demo") for name, wanted in needed.items() if wanted}


def trial_for(kind: Kind, work: Path) -> Trial:
    """The kind's folder in `work`, with its run folder set up as `kind.folder` says."""
    folder = work / "kinds" / kind.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    trial = Trial(work, folder, folder / "run", cli_environment(work), demo_mode=kind.folder == "demo")
    if kind.folder in ("copy", "demo"):
        shutil.copytree(trial.baseline, trial.run_dir, symlinks=True)
    return trial


def outcome_problems(kind: Kind, run: Run, trial: Trial) -> list[str]:
    """How the faulted run missed what the kind expects."""
    expect, problems = kind.expect, []
    if run.code not in expect.codes:
        problems.append(f"exit {run.code}, expected {' or '.join(map(str, expect.codes))}")
    problems += [f"the message does not say {text!r}" for text in expect.says if text not in run.message]
    if expect.within is not None and run.seconds > expect.within:
        problems.append(f"took {run.seconds} s, expected at most {expect.within:.0f} s")
    if expect.rejected is not None:
        found = rejected_names(trial.run_dir) if (trial.run_dir / "rejected.csv").is_file() else []
        if not any(expect.rejected in name for name in found):
            problems.append(f"rejected.csv does not name {expect.rejected}")
    return problems


def rejected_names(run_dir: Path) -> list[str]:
    """The filenames listed in the run folder's rejected.csv."""
    table = pd.read_csv(run_dir / "rejected.csv", dtype=str, keep_default_na=False)
    return table.filename.tolist()


def rerun_problems(kind: Kind, trial: Trial) -> tuple[list[str], float | None]:
    """(how the run after the fault differs from the baseline, that rerun's seconds)."""
    if kind.folder == "none":
        written = trial.run_dir.exists()
        return ([f"the refused run wrote {trial.relative(trial.run_dir)}"] if written else []), None
    seconds = None
    if kind.rerun:
        run = trial.rerun()
        seconds = run.seconds
        if run.code != 0:
            return [f"the rerun failed (exit {run.code}): {run.message}"], seconds
    for check in trial.after_rerun:
        check()
    return differences(trial.run_dir, trial.baseline), seconds


def run_kind(kind: Kind, work: Path, source: dict[str, str]) -> dict:
    """Run one kind and check it; its row of the results."""
    started = time.perf_counter()
    trial = trial_for(kind, work)
    try:
        run = kind.inject(trial)
    except Exception as error:  # a fault the script could not set up or a check it could not make: a failure
        run = Run(-1, round(time.perf_counter() - started, 1), "")
        trial.problems.append(f"the benchmark itself failed: {type(error).__name__}: {error}")
    outcome = outcome_problems(kind, run, trial) + trial.problems
    try:
        rerun, rerun_seconds = rerun_problems(kind, trial)
    except Exception as error:  # e.g. an output a check reads is missing
        rerun, rerun_seconds = [f"the benchmark itself failed after the fault: {type(error).__name__}: {error}"], None
    changed = sorted(set(source.items()) ^ set(digests(work / "data").items()))
    problems = outcome + rerun + ([f"source changed: {changed[0][0]} and {len(changed) - 1} more"] if changed else [])
    return {"kind": kind.name, "category": kind.category, "what": kind.what, "expected": kind.expect.describe(),
            "code": run.code, "message": run.message, "seconds": run.seconds, "rerun_seconds": rerun_seconds,
            "rerun_equal": equal_cell(kind, rerun),
            "source_unchanged": not changed, "problems": problems, "passed": not problems,
            "wall_seconds": round(time.perf_counter() - started, 1)}


def equal_cell(kind: Kind, rerun: list[str]) -> str:
    """The "rerun = baseline" cell: yes / no, or for a kind refused before any work, whether it wrote nothing."""
    if kind.folder == "none":
        return "written" if rerun else "nothing written"
    return "no" if rerun else "yes"
