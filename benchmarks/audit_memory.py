"""Peak memory of the whole audit at two dataset sizes: does it grow with the number of images?

Runs the real command line, `cxr-audit demo --config CFG --out RUN` (the whole Prefect flow on a generated
synthetic COVIDx folder, its temporary Prefect API server included), once per size N in a fresh child
process, and samples the resident set size (RSS) of the child's whole process tree with psutil every
`--interval` s. N counts every generated image: the synthetic generator's proportions, 60 % `train`,
20 % `test` and 20 % `test_decorrelated` (N = 500: 300 / 100 / 100; N = 2,000: 1,200 / 400 / 400).

Per N it reports the wall time, the flow's time, the time and peak RSS of each stage (from the task runs the
flow recorded in Prefect's database), the peak RSS of the process tree (sampled) and of the largest single
process (the kernel's exact ru_maxrss), and between the two sizes the RSS slope per image and whether

    peak tree RSS(N2) <= 1.25 × peak tree RSS(N1) + 3 · n_train(N2) · S² bytes

holds: the images that training preloads as uint8 (pipeline.train.preload, n_train · S² bytes at the model's
input size S) are the audit's one intended O(N) array, and up to three copies of it live at once (the
preload buffer, its clone, and the train/validation copies made by boolean indexing); 25 % covers the
tables and interpreter noise. Writes benchmarks/results/audit_memory.md and .json.

    python -m benchmarks.audit_memory            # N = 500 and 2,000, ~21 min on 2 busy CPU cores
    python -m benchmarks.audit_memory --quick    # N = 24 and 48, tiny settings, ~1 min: proves the script runs
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil  # a dependency of dask.distributed (prefect-dask), so always installed with cxr-audit
import yaml

from benchmarks.common import (
    CLI,
    RESULTS,
    ROOT,
    command_line,
    environment,
    load_average,
    load_note,
    migrate_prefect,
    program,
    write_results,
)

MB = 1024 * 1024
TEST_FRACTION = 0.2  # datasets.synthetic.generate: test and test_decorrelated each hold n_test images
SLACK = 1.25  # the whole-tree bound's allowance for tables and allocator noise
STAGE_SLACK = 1.05  # the per-stage bound's: CRAFT's fixed peak must not hide growth in the other stages
DEFAULT_INTERVAL = 0.1  # seconds between RSS samples
PRELOAD_COPIES = 3  # preload buffer + its clone + the train/validation copies (pipeline.train)

# The audit's settings (flows.config.RunConfig keys); data.synthetic's sizes are set per N.
SETTINGS: dict = {
    "data": {"synthetic": {"image_size": 128, "shortcut": 0.9, "seed": 0}},
    "train": {"architecture": "small_cnn", "image_size": 64, "epochs": 3, "batch_size": 32,
              "schedule": "onecycle", "patience": 3},
    "explain": {"mask_size": 7, "iterations": 3, "ig_steps": 2, "batch_size": 16, "chunk_size": 50},
    "text": {"upscale": 1.0},  # CRAFT canvas = the 128-px image itself
    "compare": {"bootstrap": 200},
    "audit": {"gallery_size": 4},
}
QUICK_SETTINGS: dict = {
    "data": {"synthetic": {"image_size": 64, "shortcut": 0.9, "seed": 0}},
    "train": {"architecture": "small_cnn", "image_size": 32, "epochs": 1, "batch_size": 8,
              "schedule": "onecycle", "patience": 1, "val_fraction": 0.25},
    "explain": {"mask_size": 4, "iterations": 1, "ig_steps": 1, "batch_size": 16, "chunk_size": 50},
    "text": {"upscale": 1.0},
    "compare": {"bootstrap": 100},
    "audit": {"gallery_size": 2},
}
SIZES, QUICK_SIZES = (500, 2000), (24, 48)
# Task names of flows/audit.py, in flow order, and what they do.
STAGES = {
    "prepare-data": "generate the synthetic images, hash them",
    "detect-text": "CRAFT text detection (train + test)",
    "train-classifier": "train A and B (preloads the images)",
    "predict": "predictions of A and B",
    "explain-chunk": "iGOS++ of A and B (test)",
    "audit": "text shares, counterfactuals, flag truth",
    "build-covidx-pp": "inpaint the text: COVIDx++",
    "compare": "paired bootstrap, McNemar",
}


@dataclass
class Stage:
    """The task runs of one flow stage: count, wall time they occupied (union of intervals), peak tree RSS."""

    tasks: int
    seconds: float
    peak_rss_mb: float | None


@dataclass
class ChildRun:
    """One `cxr-audit` process: its exit code, wall time and memory samples."""

    returncode: int
    wall_seconds: float
    kernel_maxrss_mb: float  # ru_maxrss of the largest single process of the tree (exact)
    samples: list[tuple[float, float, float, int]] = field(default_factory=list)  # (epoch s, tree MB, own MB, procs)

    @property
    def peak_tree_mb(self) -> float:
        return max(sample[1] for sample in self.samples)

    @property
    def peak_own_mb(self) -> float:
        return max(sample[2] for sample in self.samples)

    @property
    def max_processes(self) -> int:
        return max(sample[3] for sample in self.samples)


# ---- running and measuring --------------------------------------------------------------------------------


def split_sizes(n: int) -> tuple[int, int]:
    """(n_train, n_test) with the generator's proportions and n_train + 2 · n_test = n."""
    n_test = max(3, round(n * TEST_FRACTION))
    return n - 2 * n_test, n_test


def audit_config(settings: dict, n: int, run_dir: Path) -> dict:
    """The YAML mapping of one run: `settings` with data.synthetic sized for N images, into `run_dir`."""
    config = copy.deepcopy(settings)
    n_train, n_test = split_sizes(n)
    config["data"]["synthetic"].update(n_train=n_train, n_test=n_test)
    config["run_dir"] = str(run_dir)
    return config


def tree_rss(process: psutil.Process) -> tuple[float, float, int]:
    """(RSS of the process and all its descendants, RSS of the process alone, processes) in MB."""
    own, total, count = 0.0, 0.0, 0
    for member in [process, *process.children(recursive=True)]:
        try:
            rss = member.memory_info().rss / MB
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        own = rss if member.pid == process.pid else own
        total, count = total + rss, count + 1
    return total, own, count


def run_child(command: Sequence[str], env: dict[str, str], log: Path, interval: float) -> ChildRun:
    """Run `command`, sampling its process tree's RSS every `interval` s; stdout and stderr go to `log`."""
    started = time.perf_counter()
    with log.open("wb") as out:
        child = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        process = psutil.Process(child.pid)
        samples = []
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                break
            try:
                samples.append((time.time(), *tree_rss(process)))
            except psutil.NoSuchProcess:  # exited between wait4 and the sample
                pass
            time.sleep(interval)
    child.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(child.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024, samples)


def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of a UTC timestamp as Prefect's SQLite database stores it."""
    return datetime.datetime.fromisoformat(timestamp).replace(tzinfo=datetime.UTC).timestamp()


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def flow_stages(database: Path, since: float, samples: Sequence[tuple[float, float, float, int]]
                ) -> tuple[float, dict[str, Stage]]:
    """(flow run seconds, stage → Stage) of the last flow run started after `since`, from Prefect's database.

    A stage's seconds are the union of its task runs' intervals (its wall time, also when a Dask cluster runs
    tasks in parallel); its peak RSS is the largest tree sample taken inside them.
    """
    with sqlite3.connect(database) as db:
        flow_id, start, end = db.execute(
            "SELECT id, start_time, end_time FROM flow_run WHERE start_time IS NOT NULL ORDER BY start_time DESC "
            "LIMIT 1").fetchone()
        if _epoch(start) < since:
            raise RuntimeError(f"{database}: no flow run started after the child did")
        rows = db.execute("SELECT name, start_time, end_time FROM task_run WHERE flow_run_id = ? AND start_time IS "
                          "NOT NULL AND end_time IS NOT NULL", (flow_id,)).fetchall()
    intervals: dict[str, list[tuple[float, float]]] = {}
    for name, task_start, task_end in rows:
        intervals.setdefault(re.sub(r"-[0-9a-f]+$", "", name), []).append((_epoch(task_start), _epoch(task_end)))
    stages = {}
    for name in [*STAGES, *sorted(set(intervals) - set(STAGES))]:
        if name not in intervals:
            continue
        spans = _union(intervals[name])
        inside = [tree for t, tree, _, _ in samples if any(a <= t <= b for a, b in spans)]
        stages[name] = Stage(len(intervals[name]), sum(b - a for a, b in spans), max(inside) if inside else None)
    return _epoch(end) - _epoch(start), stages


def run_audit_child(settings: dict, n: int, work: Path, prefect_home: Path, interval: float,
                    dask_workers: int | None = None, tag: str = "") -> dict:
    """One whole audit of N synthetic images by `cxr-audit demo` in a child process; its measured row."""
    name = f"n{n}{tag}"
    run_dir, config_path = work / name, work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(audit_config(settings, n, run_dir), sort_keys=False))
    command = [str(CLI), "demo", "--config", str(config_path), "--out", str(run_dir)]
    command += ["--dask-workers", str(dask_workers)] if dask_workers else []
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.pop("PREFECT_API_URL", None)  # always the CLI's own temporary server, inside the measured tree
    since = time.time()
    child = run_child(command, env, work / f"{name}.log", interval)
    if child.returncode != 0:
        tail = (work / f"{name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{shlex.join(command)} exited {child.returncode}:\n{tail}")
    flow_seconds, stages = flow_stages(prefect_home / "prefect.db", since, child.samples)
    summary = json.loads((run_dir / "summary.json").read_text())
    n_train, n_test = split_sizes(n)
    images = sum(summary["dataset"].values())
    if images != n:
        raise RuntimeError(f"{run_dir}: the run holds {images} images, expected {n}")
    return {"n": n, "n_train": n_train, "n_test": n_test, "dask_workers": dask_workers,
            "wall_seconds": round(child.wall_seconds, 1), "flow_seconds": round(flow_seconds, 1),
            "startup_seconds": round(child.wall_seconds - flow_seconds, 1),
            "peak_tree_rss_mb": round(child.peak_tree_mb, 1), "peak_flow_process_rss_mb": round(child.peak_own_mb, 1),
            "kernel_maxrss_mb": round(child.kernel_maxrss_mb, 1), "max_processes": child.max_processes,
            "rss_samples": len(child.samples),
            "stages": {key: asdict(stage) | {"seconds": round(stage.seconds, 2)} for key, stage in stages.items()},
            "command": shlex.join(command)}


# ---- the report --------------------------------------------------------------------------------------------


def preload_mb(n_train: int, settings: dict) -> float:
    """Bytes (MB) of training's uint8 preload of n_train images at the model input size."""
    return n_train * settings["train"]["image_size"] ** 2 / MB


def verdict(rows: list[dict], settings: dict) -> dict:
    """The bounds (whole tree, and each stage) and the RSS slope between the smallest and largest N."""
    small, large = rows[0], rows[-1]
    expected = PRELOAD_COPIES * preload_mb(large["n_train"], settings)
    limit = SLACK * small["peak_tree_rss_mb"] + expected
    slope = (large["peak_tree_rss_mb"] - small["peak_tree_rss_mb"]) / (large["n"] - small["n"])
    own_slope = (large["peak_flow_process_rss_mb"] - small["peak_flow_process_rss_mb"]) / (large["n"] - small["n"])
    per_image_preload = PRELOAD_COPIES * preload_mb(large["n_train"] - small["n_train"], settings) / (
        large["n"] - small["n"])
    stages = {}
    for name, stage in large["stages"].items():
        before = small["stages"].get(name, {}).get("peak_rss_mb")
        if before is not None and stage["peak_rss_mb"] is not None:
            stage_limit = STAGE_SLACK * before + expected
            stages[name] = {"limit_mb": round(stage_limit, 1), "measured_mb": stage["peak_rss_mb"],
                            "holds": stage["peak_rss_mb"] <= stage_limit}
    return {"bound": f"peak tree RSS(N={large['n']}) <= {SLACK} x peak tree RSS(N={small['n']}) + "
                     f"{PRELOAD_COPIES} x n_train x S^2 bytes",
            "limit_mb": round(limit, 1), "measured_mb": large["peak_tree_rss_mb"],
            "holds": large["peak_tree_rss_mb"] <= limit and all(stage["holds"] for stage in stages.values()),
            "stage_bound": f"each stage's peak tree RSS(N={large['n']}) <= {STAGE_SLACK} x its peak at "
                           f"N={small['n']} + {PRELOAD_COPIES} x n_train x S^2 bytes",
            "stages": stages,
            "preload_mb": {row["n"]: round(preload_mb(row["n_train"], settings), 2) for row in rows},
            "slope_mb_per_1000_images": round(1000 * slope, 2),
            "flow_process_slope_mb_per_1000_images": round(1000 * own_slope, 2),
            "preload_slope_mb_per_1000_images": round(1000 * per_image_preload, 2),
            "ratio_large_to_small": round(large["peak_tree_rss_mb"] / small["peak_tree_rss_mb"], 3)}


def stage_table(rows: list[dict]) -> list[str]:
    """Markdown: per stage, seconds and peak tree RSS at each N."""
    names = [name for name in [*STAGES, *sorted({s for row in rows for s in row["stages"]} - set(STAGES))]
             if any(name in row["stages"] for row in rows)]
    head = " | ".join(f"s, N={row['n']} | peak MB, N={row['n']}" for row in rows)
    lines = [f"| stage (task) | what | {head} |", "|---|---|" + "---:|---:|" * len(rows)]
    for name in names:
        cells = []
        for row in rows:
            stage = row["stages"].get(name)
            cells += ["–", "–"] if stage is None else [
                f"{stage['seconds']:.1f}", "–" if stage["peak_rss_mb"] is None else f"{stage['peak_rss_mb']:.0f}"]
        lines.append(f"| {name} | {STAGES.get(name, '')} | {' | '.join(cells)} |")
    return lines


def peak_stage(row: dict) -> str:
    """The stage whose task runs saw the largest tree RSS, with that RSS."""
    peaks = {name: stage["peak_rss_mb"] for name, stage in row["stages"].items() if stage["peak_rss_mb"] is not None}
    name = max(peaks, key=peaks.get)
    return f"`{name}` ({peaks[name]:.0f} MB) at N={row['n']}"


def markdown(result: dict) -> str:
    """The results file."""
    env, rows, check = result["environment"], result["rows"], result["verdict"]
    settings = result["settings"]
    lines = [
        "# Peak memory of the whole audit vs the number of images" + (" (--quick: not a measurement to quote)"
                                                                      if result["quick"] else ""),
        "",
        f"- command: `{result['command']}`",
        f"- date: {env['date']}; machine: {env['machine']}; python {env['python']}, torch {env['torch']}, "
        f"prefect {env['prefect']}",
        load_note(env),
        f"- each N: `{CLI.name} demo --config <work>/nN.yaml --out <work>/nN` (the config: the settings below), "
        "a fresh child process with its own temporary Prefect server (its database created beforehand, so no "
        "run pays for the migration); one run per N",
        f"- settings: `{json.dumps(settings, separators=(', ', ': '))}`; every other key is the default "
        "(flows.config.RunConfig); data.synthetic n_train / n_test per N: "
        + ", ".join(f"{row['n']}: {row['n_train']} / {row['n_test']}" for row in rows),
        f"- RSS: psutil, every {result['interval_s']} s, summed over the child and all its descendants (the "
        "Prefect API server, Dask workers when there are some; shared library pages count once per process); "
        "kernel max RSS: ru_maxrss of the largest single process (exact, not sampled)",
        f"- total benchmark wall time: {result['total_wall_seconds']:.0f} s",
        "",
        "| N | train / test / test_decorrelated | wall s | flow s | start-up + shut-down s | peak tree RSS MB "
        "| peak flow-process RSS MB | kernel max RSS MB | processes | preload n_train·S² MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['n']} | {row['n_train']} / {row['n_test']} / {row['n_test']} | {row['wall_seconds']} "
                     f"| {row['flow_seconds']} | {row['startup_seconds']} | {row['peak_tree_rss_mb']:.0f} "
                     f"| {row['peak_flow_process_rss_mb']:.0f} | {row['kernel_maxrss_mb']:.0f} "
                     f"| {row['max_processes']} | {preload_mb(row['n_train'], settings):.2f} |")
    lines += [
        "",
        f"**Bound: {check['bound']} = {check['limit_mb']} MB; measured {check['measured_mb']} MB: "
        f"{'holds' if check['measured_mb'] <= check['limit_mb'] else 'FAILS'}.** Per stage, {check['stage_bound']}: "
        + ", ".join(f"`{name}` {stage['measured_mb']:.0f} <= {stage['limit_mb']:.0f} MB "
                    f"{'holds' if stage['holds'] else 'FAILS'}" for name, stage in check["stages"].items()) + ".",
        "",
        f"- peak tree RSS slope: {check['slope_mb_per_1000_images']} MB per 1,000 images (flow process alone: "
        f"{check['flow_process_slope_mb_per_1000_images']}); the preload term alone, with its "
        f"{PRELOAD_COPIES} copies, predicts {check['preload_slope_mb_per_1000_images']} MB per 1,000 images; "
        f"ratio of the peaks {check['ratio_large_to_small']}",
        "- the stage with the largest tree RSS: " + ", ".join(peak_stage(row) for row in rows),
        "",
        "Per stage (task runs of flows/audit.py from Prefect's database): wall time, and the largest tree RSS "
        "sampled while the stage ran. Time outside the tasks (`flow s` minus the stages) is summaries, report "
        "and Prefect bookkeeping; start-up is imports and the temporary Prefect server.",
        "",
        *stage_table(rows),
    ]
    return "\n".join(lines) + "\n"


# ---- CLI ---------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the audit at each size, write the markdown and JSON results, print the markdown."""
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help=f"comma-separated N (default {SIZES}; --quick {QUICK_SIZES})")
    parser.add_argument("--quick", action="store_true", help="tiny settings and N; writes to a temporary folder "
                        "unless --out-dir is given")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help=f"RSS sampling interval, s (default {DEFAULT_INTERVAL})")
    parser.add_argument("--out-dir", type=Path, default=None, help=f"results folder (default {RESULTS})")
    parser.add_argument("--work-dir", type=Path, default=None, help="run folders (default: a temporary folder, "
                        "deleted after a successful run and kept after a failure)")
    parser.add_argument("--render", type=Path, default=None, help="an audit_memory.json: evaluate the bounds on "
                        "its measurements again and rewrite it and its markdown (no audit is run)")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        result["verdict"] = verdict(result["rows"], result["settings"])
        write_results(args.render.with_suffix(".md"), result, markdown(result))
        return 0
    sizes = sorted(int(n) for n in args.sizes.split(",")) if args.sizes else list(QUICK_SIZES if args.quick
                                                                                   else SIZES)
    if len(sizes) < 2:
        parser.error("--sizes needs at least two N")
    settings = QUICK_SETTINGS if args.quick else SETTINGS
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="audit_memory_out_")) if args.quick else RESULTS)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="audit_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    started, load_start = time.perf_counter(), load_average()
    migrate_prefect(work / "prefect-home")
    rows = []
    for n in sizes:
        rows.append(run_audit_child(settings, n, work, work / "prefect-home", args.interval))
        print(f"[{time.perf_counter() - started:6.0f} s] N = {n}: peak tree RSS {rows[-1]['peak_tree_rss_mb']:.0f}"
              f" MB, wall {rows[-1]['wall_seconds']} s", file=sys.stderr, flush=True)
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    result = {"quick": args.quick, "command": command_line(__file__, argv),
              "environment": environment((load_start, load_average())), "settings": settings,
              "interval_s": args.interval, "rows": rows, "verdict": verdict(rows, settings),
              "total_wall_seconds": round(time.perf_counter() - started, 1)}
    write_results(out_dir / "audit_memory.md", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
