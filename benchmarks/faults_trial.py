"""The parts of the fault run (`python -m benchmarks.faults`) that every kind uses: one kind's trial (its folders,
the CLI runs it starts, the problems its checks find), what a kind is and what its faulted run must do, the
helpers that set a fault up and remove it, and the comparison of a run folder's outputs with the baseline's.

Compared (COMPARED): summary.json without run_id, seconds and since_last_run (what changed since the run before:
history, not outputs), predictions/*.csv, audit/a.csv, compare/metrics.csv, covidx_pp/manifest.csv,
text/detections.csv without its seconds; numbers within rtol 1e-4, atol 1e-6.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import CLI, ROOT

TRAIN, TEST, DECORRELATED = "train_synthetic.txt", "test_synthetic.txt", "test_decorrelated_synthetic.txt"
# Images of the generated folder (generate names them <split prefix>-<patient>-<film>; film 0 always exists).
TRAIN_IMAGE, TEST_IMAGE, DECORRELATED_IMAGE = "synth-tr-00001-0.png", "synth-te-00002-0.png", "synth-te-00003-0.png"
COMPARED = ("summary.json", "predictions/*.csv", "audit/a.csv", "compare/metrics.csv", "covidx_pp/manifest.csv",
            "text/detections.csv")
RTOL, ATOL = 1e-4, 1e-6
RUN_TIMEOUT = 900  # seconds one CLI run may take before the benchmark gives up on it
QUICK_EXIT = 20  # seconds a config error may take (Python and torch imports included)


@dataclass(frozen=True)
class Run:
    """One CLI run: exit code (negative: killed by that signal), seconds, first line of its error output."""

    code: int
    seconds: float
    message: str


@dataclass(frozen=True)
class Expect:
    """What a kind's faulted run must do: exit with one of `codes`, print a message containing each of `says`,
    end within `within` seconds, list `rejected` (a filename) in <run>/rejected.csv."""

    codes: tuple[int, ...] = (0,)
    says: tuple[str, ...] = ()
    within: float | None = None
    rejected: str | None = None

    def describe(self) -> str:
        """The expectation in words, for the results table."""
        parts = [f"exit {' or '.join(map(str, self.codes))}"]
        parts += [f"says {text!r}" for text in self.says]
        parts += [f"within {self.within:.0f} s"] if self.within else []
        parts += [f"rejected.csv names {self.rejected}"] if self.rejected else []
        return "; ".join(parts)


@dataclass
class Trial:
    """One kind's folder, run folder, CLI environment and the problems its own checks found."""

    work: Path
    folder: Path
    run_dir: Path
    env: dict[str, str]
    demo_mode: bool = False
    problems: list[str] = field(default_factory=list)
    after_rerun: list[Callable[[], None]] = field(default_factory=list)
    runs: int = 0

    @property
    def data(self) -> Path:
        return self.work / "data"

    @property
    def config(self) -> Path:
        return self.work / "tiny.yaml"

    @property
    def baseline(self) -> Path:
        """The run folder of the uninterrupted run this kind is compared with."""
        return self.work / ("baseline-demo" if self.demo_mode else "baseline") / "run"

    def check(self, ok: bool, problem: str) -> None:
        """Record `problem` unless `ok`."""
        if not ok:
            self.problems.append(problem)

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.work)

    def audit_args(self, config: Path | None = None, out: Path | None = None,
                   tests: Sequence[str] = (TEST, DECORRELATED)) -> list[str]:
        """`cxr-audit run` on the source folder into the run folder (paths relative to the work folder)."""
        return ["run", "--data", "data", "--train-split", TRAIN, *(arg for test in tests for arg in ("--test-split",
                test)), "--out", self.relative(out or self.run_dir), "--config", self.relative(config or self.config)]

    def demo_args(self) -> list[str]:
        return ["demo", "--out", self.relative(self.run_dir), "--config", self.relative(self.config)]

    def audit(self, **options: object) -> Run:
        return self.cli(self.audit_args(**options))

    def rerun(self) -> Run:
        """The kind's command without the fault: `demo` for the synthetic kinds, else `run`."""
        return self.cli(self.demo_args() if self.demo_mode else self.audit_args())

    def start(self, args: Sequence[str] | None = None) -> tuple[subprocess.Popen, float]:
        """The CLI started in its own session (a kill reaches its whole process group); output in log files."""
        self.runs += 1
        log = self.folder / f"run{self.runs}"
        with log.with_suffix(".stdout").open("wb") as out, log.with_suffix(".stderr").open("wb") as err:
            process = subprocess.Popen([str(CLI), *(args or self.audit_args())], cwd=self.work, env=self.env,
                                       stdout=out, stderr=err, start_new_session=True)
        return process, time.perf_counter()

    def finish(self, process: subprocess.Popen, started: float, timeout: float = RUN_TIMEOUT) -> Run:
        """Wait for the run (up to `timeout` s), kill what is left of its process group; the Run."""
        try:
            process.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # what is left of the run's process group, if anything
        return Run(process.returncode, round(time.perf_counter() - started, 1), self.message())

    def cli(self, args: Sequence[str]) -> Run:
        """Run the CLI with `args` to the end."""
        return self.finish(*self.start(args))

    def message(self) -> str:
        """The first `error:` line of the last run's stderr, else its first warning (progress lines are not
        messages), with work-folder paths made relative."""
        lines = [line.strip() for line in (self.folder / f"run{self.runs}.stderr").read_text(errors="replace")
                 .splitlines()]
        first = next((line for line in lines if line.startswith("error:")),
                     next((line for line in lines if "WARN" in line.upper()), ""))
        return first.replace(f"{self.work}/", "").replace(str(self.work), ".").replace(str(ROOT), "<repo>")

    def config_with(self, settings: dict) -> Path:
        """tiny.yaml with `settings` merged in, written into the kind's folder."""
        path = self.folder / "config.yaml"
        path.write_text(yaml.safe_dump(merged(yaml.safe_load(self.config.read_text()), settings)))
        return path


@dataclass(frozen=True)
class Kind:
    """A fault kind: `inject` sets the fault up, runs the CLI, removes the fault and returns that run.

    folder: "copy" (a copy of the baseline run folder), "demo" (of the demo baseline), "fresh" (a new run
    folder) or "none" (refused before any work: the run folder must not appear). rerun: run the command again
    after `inject` and compare that run with the baseline (False: the faulted run itself must equal it)."""

    name: str
    category: str
    what: str
    inject: Callable[[Trial], Run]
    expect: Expect
    folder: str = "copy"
    rerun: bool = True


def split_error(*says: str) -> Expect:
    """A split file refused: exit 2 with a message saying each of `says`."""
    return Expect((2,), says)


def config_error(*says: str) -> Expect:
    """A config or usage refused before any work: exit 2, saying each of `says`, within QUICK_EXIT seconds."""
    return Expect((2,), says, within=QUICK_EXIT)


# ---- setting a fault up -----------------------------------------------------------------------------------------


def merged(base: dict, extra: dict) -> dict:
    """`base` with the nested mapping `extra` merged in (a copy)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


@contextlib.contextmanager
def replaced(path: Path, content: bytes | None) -> Iterator[None]:
    """`path` holds `content` (None: it is deleted) inside the block; afterwards its old bytes again (or it is
    removed if it did not exist)."""
    original = path.read_bytes() if path.exists() else None
    try:
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        yield
    finally:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(original)


def edited_lines(path: Path, edit: Callable[[list[str]], list[str]], separator: str = "\n"
                 ) -> contextlib.AbstractContextManager[None]:
    """`replaced` with the split file's lines changed by `edit`."""
    lines = path.read_text().splitlines()
    return replaced(path, (separator.join(edit(lines)) + "\n").encode())


def set_field(line: str, index: int, value: str) -> str:
    """A split-file line with its `index`-th space-separated field replaced."""
    fields = line.split(" ")
    fields[index] = value
    return " ".join(fields)


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (relative path → hex)."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def mtimes(folder: Path, pattern: str) -> dict[str, int]:
    """Modification time (ns) of each file in `folder` matching `pattern`, by name."""
    return {path.name: path.stat().st_mtime_ns for path in folder.glob(pattern)}


def wait_for(process: subprocess.Popen, ready: Callable[[], bool], poll: float = 0.1,
             timeout: float = RUN_TIMEOUT) -> bool:
    """Whether `ready()` came true while the process ran (checked every `poll` seconds)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def killed_when(t: Trial, ready: Callable[[], bool], poll: float = 0.1) -> Run:
    """Start the audit and SIGKILL its whole process group as soon as `ready()` holds."""
    process, started = t.start()
    t.check(wait_for(process, ready, poll), "the run ended before the kill point")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return t.finish(process, started)


# ---- comparing runs ---------------------------------------------------------------------------------------------


def differences(run_dir: Path, reference: Path) -> list[str]:
    """What differs between the outputs of two run folders (COMPARED), one short line per file."""
    problems = summary_differences(run_dir, reference)
    names = sorted(str(path.relative_to(reference)) for pattern in COMPARED[1:] for path in reference.glob(pattern))
    for name in names:
        try:
            found, expected = (read_table(folder / name) for folder in (run_dir, reference))
            pd.testing.assert_frame_equal(found, expected, check_exact=False, rtol=RTOL, atol=ATOL)
        except (AssertionError, OSError) as error:
            problems.append(f"{name} differs ({str(error).strip().splitlines()[0][:90]})")
    return problems


def read_table(path: Path) -> pd.DataFrame:
    """A CSV output as compared (filenames as text; detections.csv without its seconds)."""
    table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False)
    return table.drop(columns="seconds") if path.name == "detections.csv" else table


def summary_differences(run_dir: Path, reference: Path) -> list[str]:
    """How summary.json differs from the reference's, history keys left out."""
    try:
        found, expected = (json.loads((folder / "summary.json").read_text()) for folder in (run_dir, reference))
    except OSError as error:
        return [f"summary.json: {error.strerror}"]
    keys = sorted((set(found) | set(expected)) - {"run_id", "seconds", "since_last_run"})
    differ = [key for key in keys if not close(found.get(key), expected.get(key))]
    return [f"summary.json differs in {', '.join(differ)}"] if differ else []


def close(a: object, b: object) -> bool:
    """Equal JSON values, numbers within RTOL / ATOL."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return bool(np.isclose(a, b, rtol=RTOL, atol=ATOL))
    return a == b

