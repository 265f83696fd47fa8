"""Scripted fault run of the audit command line: bad input, bad configs, interruptions, a damaged run folder
and result store, changed data; after each fault, the rerun equals an uninterrupted run and the source
dataset is byte-identical.

A tiny COVIDx-layout folder (`datasets.synthetic.generate` with the sizes of `TINY`, the flow tests' tiny audit
in benchmarks/common.py) is written to `<work>/data` and audited by the real CLI, each time a fresh child process:

    cxr-audit run --data data --train-split train_synthetic.txt --test-split test_synthetic.txt
                  --test-split test_decorrelated_synthetic.txt --out <run> --config tiny.yaml

(`tiny.yaml`: the `TINY` settings, plus `clean.checkpoint_every: 2` so that a kill can land inside
the COVIDx++ build; it decides no pixel). Each kind injects its fault, runs the CLI, removes the fault and runs
the same command again. The kinds of bad input and bad config are in benchmarks/faults_input_kinds.py, those that
interrupt a run, damage its folder or result store or change its data in benchmarks/faults_run_kinds.py; how a
kind is run and checked (its expected outcome, the rerun equal to an uninterrupted baseline run, the source
byte-identical) in benchmarks/faults_check.py; what they all use (a kind's trial, comparing run folders) in
benchmarks/faults_trial.py.

    python -m benchmarks.faults                         # every kind (~38 min on 2 cores: 2,269 s measured)
    python -m benchmarks.faults --list                  # the kinds
    python -m benchmarks.faults --only nul-split,unknown-key --work /tmp/faults

`--work DIR` keeps the source, the baselines and every kind's folder (each run's stdout and stderr
included) and reuses the source and baselines found there (a baseline only when the same code and settings
ran it). Writes benchmarks/results/faults.md and .json (`--out-dir`
elsewhere); exits 1 if any kind fails its checks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import (
    RESULTS,
    TINY,
    command_line,
    environment,
    load_average,
    load_note,
    program,
    write_results,
)
from benchmarks.faults_check import baselines, prepare, run_kind
from benchmarks.faults_input_kinds import INPUT_KINDS
from benchmarks.faults_run_kinds import RUN_KINDS
from benchmarks.faults_trial import Kind, digests

KINDS = (*INPUT_KINDS, *RUN_KINDS)
MESSAGE_LENGTH = 120


# ---- the report -------------------------------------------------------------------------------------------------


def cell(text: str, length: int = MESSAGE_LENGTH) -> str:
    """`text` cut to `length` characters, its pipes escaped for a markdown table cell."""
    text = text if len(text) <= length else text[: length - 1] + "…"
    return text.replace("|", "\\|")


def listed(problems: list[str], most: int = 4) -> str:
    """Up to `most` problems, each cut short, and how many more there are (the JSON has them all)."""
    shown = "; ".join(cell(problem, 160) for problem in problems[:most])
    return shown + (f"; … and {len(problems) - most} more" if len(problems) > most else "")


def markdown(result: dict) -> str:
    """The results file: one row per kind, the runtime per category, the summary."""
    rows, env = result["rows"], result["environment"]
    lines = ["# Fault run of the audit CLI", "",
             f"- command: `{result['command']}`",
             f"- date: {env['date']}; machine: {env['machine']}, nproc {env['cpu_count']}; python {env['python']}, "
             f"torch {env['torch']}, prefect {env['prefect']}", load_note(env),
             f"- baseline runs: {baseline_note(result['baselines'])}",
             f"- total wall time: {result['total_wall_seconds']:.0f} s",
             "- rerun = baseline: after the fault was removed, the same command's outputs equal the uninterrupted "
             "run's (run-folder and result-store kinds: the run after the damage); `nothing written`: refused "
             "before any work, the run without the fault is the baseline run itself",
             "- seconds: the faulted run / the rerun", "",
             "| kind | category | what was done | expected | exit | message | rerun = baseline | source unchanged "
             "| seconds | outcome |", "|---|---|---|---|---:|---|---|---|---:|---|"]
    for row in rows:
        seconds = f"{row['seconds']}" + (f" / {row['rerun_seconds']}" if row["rerun_seconds"] is not None else "")
        outcome = "pass" if row["passed"] else "**FAIL**: " + listed(row["problems"])
        lines.append(f"| {row['kind']} | {row['category']} | {cell(row['what'], 200)} | {cell(row['expected'], 200)} "
                     f"| {row['code']} | {cell(row['message'])} | {row['rerun_equal']} "
                     f"| {'yes' if row['source_unchanged'] else 'no'} | {seconds} | {outcome} |")
    lines += ["", "| category | kinds | passed | wall s |", "|---|---:|---:|---:|"]
    for category, numbers in result["categories"].items():
        lines.append(f"| {category} | {numbers['kinds']} | {numbers['passed']} | {numbers['wall_seconds']:.0f} |")
    passed = sum(row["passed"] for row in rows)
    lines += ["", f"**{len(rows)} kinds, {passed} passed, {len(rows) - passed} failed.** Baseline run folders "
              f"unchanged by the kinds: {'yes' if result['baselines_unchanged'] else 'no'}."]
    return "\n".join(lines) + "\n"


def baseline_note(timings: dict[str, float | None]) -> str:
    """E.g. "baseline 101.7 s, baseline-demo reused" (or that the kinds run needed none)."""
    notes = [f"{name} {'reused' if seconds is None else f'{seconds} s'}" for name, seconds in timings.items()]
    return ", ".join(notes) or "none needed"


def categories(rows: list[dict]) -> dict[str, dict]:
    """Per category: kinds, how many passed, their wall seconds."""
    out: dict[str, dict] = {}
    for row in rows:
        numbers = out.setdefault(row["category"], {"kinds": 0, "passed": 0, "wall_seconds": 0.0})
        numbers["kinds"] += 1
        numbers["passed"] += row["passed"]
        numbers["wall_seconds"] = round(numbers["wall_seconds"] + row["wall_seconds"], 1)
    return out


# ---- CLI --------------------------------------------------------------------------------------------------------


def selected(only: str | None) -> list[Kind]:
    """The kinds `--only` names, in the table's order (all when None); exits naming any unknown one."""
    if not only:
        return list(KINDS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(names) - {kind.name for kind in KINDS})
    if unknown:
        raise SystemExit(f"unknown kind(s): {', '.join(unknown)} (--list shows them)")
    return [kind for kind in KINDS if kind.name in names]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected kinds, write the markdown and JSON results; 1 if any kind failed."""
    parser = argparse.ArgumentParser(prog=program(__file__), description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated kinds to run (default: all)")
    parser.add_argument("--work", type=Path, help="work folder, kept and reused (default: a temporary one, kept)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    parser.add_argument("--list", action="store_true", help="list the kinds and exit")
    args = parser.parse_args(argv)
    if args.list:
        for kind in KINDS:
            print(f"{kind.name:28} {kind.category:18} {kind.what}")
        return 0
    kinds = selected(args.only)
    work = (args.work or Path(tempfile.mkdtemp(prefix="cxr-faults-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started, load_start = time.perf_counter(), load_average()
    print(f"work folder: {work}", file=sys.stderr, flush=True)
    prepare(work)
    source = digests(work / "data")
    timings = baselines(work, kinds)
    before = {name: digests(work / name / "run") for name in timings}
    rows = []
    for kind in kinds:
        rows.append(run_kind(kind, work, source))
        print(f"[{time.perf_counter() - started:6.0f} s] {kind.name}: {'pass' if rows[-1]['passed'] else 'FAIL'} "
              + "; ".join(rows[-1]["problems"]), file=sys.stderr, flush=True)
    unchanged = all(digests(work / name / "run") == hashes for name, hashes in before.items())
    result = {"command": command_line(__file__, argv),
              "environment": environment((load_start, load_average())),
              "baselines": timings, "baselines_unchanged": unchanged,
              "settings": {**TINY, "clean": {"checkpoint_every": 2}},
              "rows": rows, "categories": categories(rows),
              "total_wall_seconds": round(time.perf_counter() - started, 1)}
    write_results(args.out_dir / "faults.md", result, markdown(result))
    return 0 if unchanged and all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
