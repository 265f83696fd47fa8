"""The paper-scale audit on one GPU: the wall time of every stage, images/s of the per-image stages, and the
projected time of a full COVIDx9A audit.

Runs the real command line, `cxr-audit demo --config CFG --out RUN` (the whole Prefect flow on a generated synthetic
COVIDx folder, in a child process: benchmarks.audit_memory.run_child), with configs/paper.yaml's settings
(ResNet-50 at 224 px, bf16 training, iGOS++ faithful with K = N = 20 in bf16, CRAFT at a 1024-px canvas) on
--n-train training films and --n-test films in each of `test` and `test_decorrelated`, once per mask size
(--mask-sizes, default 28 and 224). The later mask sizes run in the first run's folder: the flow reuses what does not
depend on the maps (data, text detection, training, prediction, COVIDx++) and recomputes iGOS++, the audits and the
comparison; a reused stage's time is taken from the first run (--separate-runs: every mask size from scratch).

Stage times are the run's `timings.csv`; images/s = the images a stage handled / its seconds (training: training
films × epochs run / seconds). The projection to a full audit of P_train training and P_test audited films
(--project-train, --project-test; COVIDx9A: 30,000 / 400), per mask size:

    T = Σ_train+test stages t·(P_train + P_test)/(n_train + n_test) + Σ_test stages t·P_test/n_test
        + Σ_training stages t·(P_train/n_train)·(E/E_run) + t_other + t_start-up

train+test stages: text detection, COVIDx++; test stages: predict, iGOS++, audit, compare; training stages:
train A, train B (E: the config's epochs, E_run: the epochs that ran; an upper bound, early stopping may end
sooner); fixed: "other" (between stages) and start-up (imports, Prefect's temporary server). A per-image stage's own
fixed cost (loading CRAFT or a model) is scaled with it, so T errs high. "prepare data" is not projected: here it
generates the synthetic films; a real audit reads and hashes its files instead. Writes
benchmarks/results/paper_scale_gpu.md and .json (--out).

    python -m benchmarks.paper_scale_gpu --n-train 500 --n-test 32 --epochs 2   # on a GPU: ~5-8 min (a guess)
    python -m benchmarks.paper_scale_gpu                # 30,000 / 400 films: hours (generating them alone ~1 h)
    python -m benchmarks.paper_scale_gpu --small        # CPU, tiny settings, ~2 min: proves the script runs
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.audit_memory import DEFAULT_INTERVAL, run_child
from benchmarks.common import (
    CLI,
    RESULTS,
    ROOT,
    command_line,
    environment,
    load_average,
    load_note,
    markdown_table,
    migrate_prefect,
    program,
    write_results,
)

CONFIG = ROOT / "configs" / "paper.yaml"
COVIDX9A = (30_000, 400)  # training and test films of COVIDx9A
MASK_SIZES, SMALL_MASK_SIZES = (28, 224), (7, 64)
# --small: tiny films, a small CNN at 64 px (its second mask is full resolution, as 224 is at 224 px), K = N = 2.
# iGOS++ in fp32: bf16 autocast on a CPU without bf16 instructions took 10x as long as fp32 here (training keeps bf16).
SMALL: dict = {
    "data": {"synthetic": {"n_train": 60, "n_test": 12, "image_size": 64}},
    "train": {"architecture": "small_cnn", "image_size": 64, "epochs": 2, "batch_size": 8, "patience": 2,
              "val_fraction": 0.2},
    "explain": {"iterations": 2, "ig_steps": 2, "precision": "fp32"},
    "text": {"long_side": 128},
    "compare": {"bootstrap": 100},
    "audit": {"gallery_size": 2},
}
# timings.csv stages by what their work grows with.
TRAIN_TEST = ("text detection", "COVIDx++")
TEST = ("predict A", "predict B", "iGOS++ of A", "iGOS++ of B", "audit A", "audit B", "compare")
TRAINING = {"train A": "a", "train B": "b", "other training seeds": None}  # None: both arms, other seeds
NOT_PROJECTED = ("prepare data",)
MASK_STAGES = ("iGOS++ of A", "iGOS++ of B", "audit A", "audit B", "compare", "other")  # recomputed per mask size
PER_IMAGE = (*TRAIN_TEST, *TEST[:-1])  # stages whose images timings.csv counts


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in, nested mappings key by key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def base_config(args: argparse.Namespace) -> dict:
    """The config file's mapping, with --small's settings over it."""
    config = yaml.safe_load(args.config.read_text())
    return merge(config, SMALL) if args.small else config


def run_config(args: argparse.Namespace, mask_size: int, run_dir: Path) -> dict:
    """The YAML mapping of one run: base_config with the sizes, epochs, device, mask size and run folder."""
    config = base_config(args)
    changes: dict = {"data": {"synthetic": {"n_train": args.n_train, "n_test": args.n_test}},
                     "explain": {"mask_size": mask_size, "device": args.device}, "text": {"device": args.device},
                     "run_dir": str(run_dir)}
    if args.image_size:
        changes["data"]["synthetic"]["image_size"] = args.image_size
    if args.epochs:
        changes["train"] = {"epochs": args.epochs}
    return merge(config, changes)


def device_name(device: str, threads: int | None) -> str:
    """The GPU (name, memory, CUDA, cuDNN) or the CPU that ran the stages, and the audit's torch CPU threads."""
    import torch

    from benchmarks.common import cpu_model

    cpu_threads = f"torch CPU threads {threads or f'default ({torch.get_num_threads()})'}"
    if device != "cuda":
        return f"CPU: {cpu_model()}, {os.cpu_count()} cores, {cpu_threads}"
    properties = torch.cuda.get_device_properties(0)
    return (f"{torch.cuda.get_device_name(0)}, {properties.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}; {cpu_threads}")


def run_audit(args: argparse.Namespace, mask_size: int, run_dir: Path, work: Path) -> dict:
    """One whole audit by `cxr-audit demo` in a child process: its wall time, peak RSS and timings.csv."""
    config_path, log = work / f"mask{mask_size}.yaml", work / f"mask{mask_size}.log"
    config_path.write_text(yaml.safe_dump(run_config(args, mask_size, run_dir), sort_keys=False))
    command = [str(CLI), "demo", "--config", str(config_path), "--out", str(run_dir)]
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect-home")}
    env.pop("PREFECT_API_URL", None)  # the CLI's own temporary server
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # training takes CUDA when it sees one
    if args.threads:  # torch reads these at start-up: its CPU threads in the flow and its workers
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    child = run_child(command, env, log, DEFAULT_INTERVAL)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
    table = pd.read_csv(run_dir / "timings.csv")
    stages = {row.stage: {"images": None if pd.isna(row.images) else int(row.images), "seconds": float(row.seconds)}
              for row in table.itertuples() if row.stage != "total"}
    flow = float(table.loc[table.stage == "total", "seconds"].iloc[0])
    epochs = {arm: len(pd.read_csv(run_dir / "models" / f"{arm}_history.csv")) for arm in ("a", "b")}
    return {"mask_size": mask_size, "run_dir": run_dir.name, "wall_seconds": round(child.wall_seconds, 1),
            "flow_seconds": flow, "startup_seconds": round(child.wall_seconds - flow, 1),
            "peak_tree_rss_mb": round(child.peak_tree_mb, 1), "epochs_run": epochs, "stages": stages}


def effective(runs: list[dict], index: int, reuse: bool) -> dict[str, dict]:
    """Stage → {images, seconds} of mask size `index`: in a reused folder, the stages that do not depend on the maps
    come from the first run, which computed them."""
    own = runs[index]["stages"]
    if not reuse or index == 0:
        return own
    first = runs[0]["stages"]
    return {name: own[name] if name in MASK_STAGES or name not in first else first[name]
            for name in dict.fromkeys([*first, *own])}


def rate(name: str, stage: dict, n_train: int, epochs: dict[str, int]) -> float | None:
    """Images/s of a per-image stage; training films × epochs run / s of a training stage; else None."""
    if not stage["seconds"]:
        return None
    if name in TRAINING:
        return n_train * epochs[TRAINING[name]] / stage["seconds"] if TRAINING[name] else None
    return stage["images"] / stage["seconds"] if name in PER_IMAGE and stage["images"] else None


def project(stages: dict[str, dict], run: dict, sizes: tuple[int, int], target: tuple[int, int],
            epochs: int) -> dict:
    """The projected seconds of each stage and in total at `target` (training, test films); see the docstring."""
    (n_train, n_test), (p_train, p_test) = sizes, target
    rows = {}
    for name, stage in stages.items():
        if name in NOT_PROJECTED:
            continue
        if name in TRAIN_TEST:
            how, factor = "train+test", (p_train + p_test) / (n_train + n_test)
        elif name in TEST:
            how, factor = "test", p_test / n_test
        elif name in TRAINING:
            ran = run["epochs_run"].get(TRAINING[name]) or max(run["epochs_run"].values())
            how, factor = f"training, {epochs}/{ran} epochs", p_train / n_train * epochs / ran
        else:
            how, factor = "fixed", 1.0
        rows[name] = {"scaled": how, "factor": round(factor, 3), "seconds": round(stage["seconds"] * factor, 1)}
    rows["start-up"] = {"scaled": "fixed", "factor": 1.0, "seconds": run["startup_seconds"]}
    total = sum(row["seconds"] for row in rows.values())
    return {"stages": rows, "seconds": round(total, 1), "hours": round(total / 3600, 2)}


# ---- the report --------------------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    """The results file."""
    env, runs, sizes = result["environment"], result["runs"], result["mask_sizes"]
    cpu = result["device"] != "cuda"
    n_train, n_test = result["n_train"], result["n_test"]
    p_train, p_test = result["project_to"]
    lines = ["# The paper-scale audit on one GPU" + (" (CPU run: NOT GPU figures)" if cpu else ""), ""]
    if cpu:
        lines += ["**These stages ran on the CPU" + (" with --small's tiny settings" if result["small"] else "")
                  + ": the times and the projection below are not GPU figures and must not be quoted as such.**", ""]
    lines += [
        f"- command: `{result['command']}`",
        f"- date: {env['date']}; machine: {env['machine']}; python {env['python']}, torch {env['torch']}, "
        f"prefect {env['prefect']}",
        f"- device: {result['device']} ({result['device_name']})",
        load_note(env),
        f"- config: `{result['config_file']}`" + (" with --small's settings" if result["small"] else "")
        + f"; as run (mask size {sizes[0]}): `{json.dumps(result['settings'], separators=(', ', ': '))}`",
        f"- data: synthetic, {n_train} training films, {n_test} in `test` and {n_test} in `test_decorrelated`; "
        f"projected to {p_train:,} training / {p_test:,} audited films (COVIDx9A: 30,000 / 400)",
        "- runs: " + ("the first mask size from scratch, the others in its folder (stages that do not depend on the "
                      "maps reused: their times below are the first run's)" if result["reuse"]
                      else "every mask size from scratch") + "; stage times from each run's timings.csv",
        f"- total benchmark wall time: {result['total_wall_seconds']:.0f} s",
        "",
        "## Stage times and images/s",
        "",
    ]
    header = ["stage", "images"] + [f"{what}, mask {s}" for s in sizes for what in ("s", "images/s")]
    names = list(dict.fromkeys(name for row in result["stages"] for name in row))
    table = []
    for name in names:
        first = next(row[name] for row in result["stages"] if name in row)
        cells = [name, "–" if first["images"] is None else str(first["images"])]
        for row, run in zip(result["stages"], runs, strict=False):
            stage = row.get(name)
            speed = stage and rate(name, stage, n_train, run["epochs_run"])
            cells += ["–", "–"] if stage is None else [f"{stage['seconds']:.1f}", f"{speed:.2f}" if speed else "–"]
        table.append(cells)
    for key, what in (("flow_seconds", "flow (timings.csv total)"), ("startup_seconds", "start-up + shut-down"),
                      ("wall_seconds", "wall (the whole command)")):
        table.append([what, ""] + [cell for run in runs for cell in (f"{run[key]:.1f}", "")])
    lines += [markdown_table(table, header), "",
              "Training's images/s: training films × epochs run / seconds (epochs run: "
              + "; ".join(f"mask {run['mask_size']}: A {run['epochs_run']['a']}, B {run['epochs_run']['b']}"
                          for run in runs) + "). Peak RSS of the process tree: "
              + ", ".join(f"{run['peak_tree_rss_mb']:.0f} MB (mask {run['mask_size']})" for run in runs) + "."
              + "".join(f" In the reused folder (mask {run['mask_size']}) the reused stages took "
                        f"{sum(t['seconds'] for n, t in run['stages'].items() if n not in MASK_STAGES):.1f} s in all "
                        "(cache look-ups)." for run in runs[1:] if result["reuse"]),
              "", f"## Projected full audit: {p_train:,} training / {p_test:,} audited films", "",
              "    T = Σ_train+test stages t·(P_train + P_test)/(n_train + n_test) + Σ_test stages t·P_test/n_test",
              "        + Σ_training stages t·(P_train/n_train)·(E/E_run) + t_other + t_start-up", "",
              f"with n_train = {n_train}, n_test = {n_test}, P_train = {p_train}, P_test = {p_test}, E = "
              f"{result['epochs']} (the config's epochs; E_run: the epochs that ran). Test stages count the "
              "synthetic run's test splits as they are (`test`, `test_decorrelated`, `test_pp`); \"prepare data\" "
              "(generating the films) is not projected; the per-image stages' own fixed costs are scaled with them "
              "and training assumes every epoch runs, so T errs high.", ""]
    projections = result["projection"]
    header = ["stage", "scaled as"] + [f"{what}, mask {s}" for s in sizes for what in ("factor", "projected s")]
    table = []
    for name in dict.fromkeys(name for p in projections for name in p["stages"]):
        first = next(p["stages"][name] for p in projections if name in p["stages"])
        table.append([name, first["scaled"]] + [cell for p in projections for cell in (
            (str(p["stages"][name]["factor"]), f"{p['stages'][name]['seconds']:.0f}") if name in p["stages"]
            else ("–", "–"))])
    table.append(["**total**", ""] + [cell for p in projections
                                      for cell in ("", f"**{p['seconds']:.0f} s = {p['hours']} h**")])
    lines += [markdown_table(table, header), ""]
    return "\n".join(lines) + "\n"


# ---- CLI ---------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help=f"the audit's settings (default {CONFIG.name})")
    parser.add_argument("--small", "--quick", action="store_true", help="CPU, tiny settings (60 / 12 films at 64 px, "
                        "small CNN, 2 epochs, masks 7 and 64, K = N = 2): proves the script runs; writes to a "
                        "temporary folder unless --out is given")
    parser.add_argument("--n-train", type=int, default=None, help=f"training films (default {COVIDX9A[0]}; --small 60)")
    parser.add_argument("--n-test", type=int, default=None, help=f"films in each test split (default {COVIDX9A[1]}; "
                        "--small 12)")
    parser.add_argument("--image-size", type=int, default=None, help="synthetic film side, px (default: the config's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs to run (default: the config's); the "
                        "projection scales training to the config's epochs")
    parser.add_argument("--mask-sizes", default=None, help=f"comma-separated (default {MASK_SIZES}; --small "
                        f"{SMALL_MASK_SIZES})")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default cuda (cpu with --small)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of the audit (default: torch's "
                        "own; --small: 1, as tiny ops on busy cores stall at thread barriers)")
    parser.add_argument("--separate-runs", action="store_true", help="run every mask size from scratch")
    parser.add_argument("--project-train", type=int, default=COVIDX9A[0], help="training films of the projection")
    parser.add_argument("--project-test", type=int, default=COVIDX9A[1], help="audited films of the projection")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS}/paper_scale_gpu.md)")
    parser.add_argument("--work-dir", type=Path, default=None, help="run folders (default: a temporary folder, "
                        "deleted after a successful run and kept after a failure)")
    args = parser.parse_args(argv)
    small_train, small_test = SMALL["data"]["synthetic"]["n_train"], SMALL["data"]["synthetic"]["n_test"]
    args.n_train = args.n_train or (small_train if args.small else COVIDX9A[0])
    args.n_test = args.n_test or (small_test if args.small else COVIDX9A[1])
    args.mask_sizes = ([int(s) for s in args.mask_sizes.split(",")] if args.mask_sizes
                       else list(SMALL_MASK_SIZES if args.small else MASK_SIZES))
    args.device = args.device or ("cpu" if args.small else "cuda")
    args.threads = args.threads or (1 if args.small else None)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device here (on the CPU: --small)")
    if min(args.n_train, args.n_test, args.project_train, args.project_test, *args.mask_sizes) < 1:
        parser.error("film counts and mask sizes must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the audit once per mask size, write the markdown and JSON results (after every run), print them."""
    args = parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="paper_scale_gpu_out_")) / "paper_scale_gpu.md" if args.small
                       else RESULTS / "paper_scale_gpu.md")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="paper_scale_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    started, load_start = time.perf_counter(), load_average()
    migrate_prefect(work / "prefect-home")
    settings = run_config(args, args.mask_sizes[0], Path("<run>"))
    settings.pop("run_dir")
    sizes = (args.n_train, args.n_test)
    target = (args.project_train, args.project_test)
    reuse = not args.separate_runs
    config_file = args.config.resolve()
    result = {"small": args.small, "command": command_line(__file__, argv), "device": args.device,
              "device_name": device_name(args.device, args.threads), "threads": args.threads,
              "config_file": str(config_file.relative_to(ROOT) if config_file.is_relative_to(ROOT) else config_file),
              "settings": settings, "epochs": base_config(args)["train"]["epochs"], "n_train": args.n_train,
              "n_test": args.n_test, "project_to": list(target), "mask_sizes": [], "reuse": reuse, "runs": [],
              "stages": [], "projection": []}
    for index, mask_size in enumerate(args.mask_sizes):
        run_dir = work / ("run" if reuse else f"run_mask{mask_size}")
        run = run_audit(args, mask_size, run_dir, work)
        print(f"[{time.perf_counter() - started:6.0f} s] mask {mask_size}: wall {run['wall_seconds']} s",
              file=sys.stderr, flush=True)
        result["runs"].append(run)
        result["mask_sizes"].append(mask_size)
        stages = effective(result["runs"], index, reuse)
        result["stages"].append(stages)
        result["projection"].append(project(stages, run, sizes, target, result["epochs"]))
        result["environment"] = environment((load_start, load_average()))
        result["total_wall_seconds"] = round(time.perf_counter() - started, 1)
        write_results(out, result, markdown(result))  # after every run: an outer timeout keeps what was measured
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
