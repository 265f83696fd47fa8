"""Scripted fault run of the audit command line: bad input, bad configs, interruptions, a damaged run folder
and result store, changed data; after each fault, the rerun equals an uninterrupted run and the source
dataset is byte-identical.

A tiny COVIDx-layout folder (`datasets.synthetic.generate` with the sizes of `TINY`, the flow tests' tiny audit
in benchmarks/common.py) is written to `<work>/data` and audited by the real CLI, each time a fresh child process:

    cxr-audit run --data data --train-split train_synthetic.txt --test-split test_synthetic.txt
                  --test-split test_decorrelated_synthetic.txt --out <run> --config tiny.yaml

(`tiny.yaml`: the `TINY` settings, plus `clean.checkpoint_every: 2` so that a kill can land inside
the COVIDx++ build; it decides no pixel). One uninterrupted baseline run comes first (and one `cxr-audit
demo` baseline for the kinds on the synthetic path); the sha256 of every source file is recorded. Then for
each kind: a run folder (a copy of the baseline's when the fault concerns a rerun, else a new one), the
fault injected, the CLI run (exit code, seconds, first line of stderr), the fault removed (the input
restored, with a new mtime) and the same command run again. Checks: the outcome the kind expects (exit
code, the message naming the file, a `rejected.csv` row, ...); the rerun's outputs equal the baseline's
(summary.json without run_id, seconds and since_last_run (what changed since the run before: history, not
outputs), predictions/*.csv, audit/a.csv, compare/metrics.csv,
covidx_pp/manifest.csv, text/detections.csv without its seconds; numbers within rtol 1e-4, atol 1e-6);
the source folder byte-identical. A kind refused before any work (bad config, bad usage) must write
nothing: the run without the fault is then the baseline run itself. A run-folder kind damages a copy of
the baseline and expects the next run to repair it, so that run is the rerun.

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
import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil  # a dependency of dask.distributed (prefect-dask)
import yaml

from benchmarks.common import (
    CLI,
    RESULTS,
    ROOT,
    TINY,
    command_line,
    environment,
    load_average,
    load_note,
    migrate_prefect,
    program,
    tiny_yaml,
    write_results,
)

TRAIN, TEST, DECORRELATED = "train_synthetic.txt", "test_synthetic.txt", "test_decorrelated_synthetic.txt"
# Images of the generated folder (generate names them <split prefix>-<patient>-<film>; film 0 always exists).
TRAIN_IMAGE, TEST_IMAGE, DECORRELATED_IMAGE = "synth-tr-00001-0.png", "synth-te-00002-0.png", "synth-te-00003-0.png"
BAD_INPUT, CONFIG, INTERRUPTION = "bad input", "config", "interruption"
DAMAGE, STORE, DATA_CHANGE = "run-folder damage", "result store", "data change"
COMPARED = ("summary.json", "predictions/*.csv", "audit/a.csv", "compare/metrics.csv", "covidx_pp/manifest.csv",
            "text/detections.csv")
RTOL, ATOL = 1e-4, 1e-6
RUN_TIMEOUT = 900  # seconds one CLI run may take before the benchmark gives up on it
QUICK_EXIT = 20  # seconds a config error may take (Python and torch imports included)
MESSAGE_LENGTH = 120
PACKAGES = ("igos", "datasets", "pipeline", "flows", "reports", "configs")  # what a baseline run depends on


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
        try:
            process.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # what is left of the run's process group, if anything
        return Run(process.returncode, round(time.perf_counter() - started, 1), self.message())

    def cli(self, args: Sequence[str]) -> Run:
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


# ---- helpers ------------------------------------------------------------------------------------------------


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


def rejected_names(run_dir: Path) -> list[str]:
    table = pd.read_csv(run_dir / "rejected.csv", dtype=str, keep_default_na=False)
    return table.filename.tolist()


def data_quality(t: Trial) -> dict:
    return json.loads((t.run_dir / "data_quality.json").read_text())


def is_sound_record(path: Path) -> bool:
    """Whether a stored task result is a record the run folder's store accepts (flows.results)."""
    from flows.results import ResultRecordError, check_result_record

    try:
        check_result_record(path, path.read_bytes())
    except (ResultRecordError, OSError):
        return False
    return True


class Payload:
    """Unpickled, it creates the file `marker`: proof that a pickle in the result store was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return open, (str(self.marker), "w")


def record(t: Trial, prefix: str) -> Path:
    """The first (by name) stored task result of the run folder whose key is `prefix`-<hash>."""
    found = sorted((t.run_dir / ".prefect" / "results").glob(f"{prefix}-*"))
    if not found:
        raise FileNotFoundError(f"{t.run_dir}: no stored result {prefix}-*")
    return found[0]


def dicom_without_pixels() -> bytes:
    """A valid DICOM file (CR image attributes, fixed UIDs) that has no Pixel Data element."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.17"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("nopixels.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.PatientID, dataset.Rows, dataset.Columns = "CR", "faults", 64, 64
    dataset.BitsAllocated, dataset.BitsStored, dataset.SamplesPerPixel = 16, 12, 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# ---- the kinds: bad input -----------------------------------------------------------------------------------


def truncated_png(t: Trial) -> Run:
    image = t.data / "train" / TRAIN_IMAGE
    with replaced(image, image.read_bytes()[: image.stat().st_size * 3 // 5]):
        return t.audit()


def zero_byte_image(t: Trial) -> Run:
    with replaced(t.data / "test" / TEST_IMAGE, b""):
        return t.audit()


def text_named_png(t: Trial) -> Run:
    with replaced(t.data / "train" / TRAIN_IMAGE, b"not an image: a text file named .png\n"):
        return t.audit()


def missing_image(t: Trial) -> Run:
    with replaced(t.data / "test_decorrelated" / DECORRELATED_IMAGE, None):
        return t.audit()


def extra_train_image(t: Trial, name: str, content: bytes) -> Run:
    """A train image `name` added with its split line (a new patient)."""
    line = f"synth-tr-90000 {name} normal rsna"
    with replaced(t.data / "train" / name, content), edited_lines(t.data / TRAIN, lambda lines: [*lines, line]):
        return t.audit()


def garbage_dicom(t: Trial) -> Run:
    return extra_train_image(t, "garbage.dcm", np.random.default_rng(0).bytes(4096))


def dicom_no_pixels(t: Trial) -> Run:
    return extra_train_image(t, "nopixels.dcm", dicom_without_pixels())


def short_split_line(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, lambda lines: [*lines[:4], " ".join(lines[4].split()[:2]), *lines[5:]]):
        return t.audit()


def unknown_label(t: Trial) -> Run:
    with edited_lines(t.data / TEST, lambda lines: [*lines[:2], set_field(lines[2], 2, "covid"), *lines[3:]]):
        return t.audit()


def severity_labelled(lines: list[str]) -> list[str]:
    return [set_field(line, 2, f"level{1 + k % 2}") for k, line in enumerate(lines)]


def severity_labels(t: Trial) -> Run:
    with edited_lines(t.data / TEST, severity_labelled):
        return t.audit()


def repeated_lines(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, lambda lines: [*lines, *lines[:2]]):
        run = t.audit()
    t.check(data_quality(t)["splits"]["train"]["repeated_lines"] == 2, "data_quality.json: repeated_lines != 2")
    t.problems += [f"read once, yet {problem}" for problem in differences(t.run_dir, t.baseline)]
    return run


def conflicting_line(lines: list[str]) -> list[str]:
    return [*lines, set_field(lines[0], 2, "COVID-19")]


def conflicting_duplicate(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, conflicting_line):
        run = t.audit()
    conflicts = data_quality(t)["splits"]["train"]["conflicts"]
    t.check([(c["kept_line"], c["dropped_line"]) for c in conflicts] == [(1, 37)],
            f"data_quality.json conflicts: {conflicts}")
    t.problems += [f"first line kept, yet {problem}" for problem in differences(t.run_dir, t.baseline)]
    return run


def duplicates_error(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, conflicting_line):
        return t.audit(config=t.config_with({"data": {"duplicates": "error"}}))


def overlapping(lines: list[str]) -> list[str]:
    """The test split with its first line given the first train patient's id."""
    return [set_field(lines[0], 0, "synth-tr-00000"), *lines[1:]]


def patient_overlap(t: Trial) -> Run:
    with edited_lines(t.data / TEST, overlapping):
        return t.audit()


def patient_overlap_allowed(t: Trial) -> Run:
    with edited_lines(t.data / TEST, overlapping):
        run = t.audit(config=t.config_with({"data": {"allow_patient_overlap": True}}))
    overlap = data_quality(t)["patient_overlap"]
    t.check(overlap.get("test_synthetic", {}).get("patients") == 1, f"data_quality.json patient_overlap: {overlap}")
    return run


def unusual_line_breaks(t: Trial) -> Run:
    with edited_lines(t.data / TRAIN, list, "\x85"), edited_lines(t.data / TEST, list, "\u2028"):
        run = t.audit()
    t.problems += [f"same records, yet {problem}" for problem in differences(t.run_dir, t.baseline)]
    return run


def nul_split(t: Trial) -> Run:
    split = t.data / TRAIN
    with replaced(split, b"\0" * split.stat().st_size):
        run = t.audit()
    t.check(len(run.message) <= 200, f"the message is {len(run.message)} characters long")
    return run


def empty_split(t: Trial) -> Run:
    with replaced(t.data / DECORRELATED, b""):
        return t.audit()


def missing_split(t: Trial) -> Run:
    with replaced(t.data / TEST, None):
        return t.audit()


def same_stem_splits(t: Trial) -> Run:
    return t.audit(tests=(TEST, f"other/{TEST}"))


def run_inside_data(t: Trial) -> Run:
    inside = t.data / "audit-run"
    run = t.audit(out=inside)
    t.check(not inside.exists(), "the run folder was created inside the source")
    return run


# ---- the kinds: config ----------------------------------------------------------------------------------------


def bad_config(settings: dict) -> Callable[[Trial], Run]:
    """A kind that runs the audit with `settings` merged into tiny.yaml."""
    return lambda t: t.audit(config=t.config_with(settings))


def duplicate_yaml_key(t: Trial) -> Run:
    path = t.folder / "config.yaml"
    path.write_text(t.config.read_text() + "train:\n  epochs: 3\n")
    return t.audit(config=path)


# ---- the kinds: interruption ----------------------------------------------------------------------------------


def kill_in_detection(t: Trial) -> Run:
    chunks = t.run_dir / "text" / "chunks"
    run = killed_when(t, lambda: len(list(chunks.glob("*.csv"))) >= 2)
    done = {path.name: path.read_bytes() for path in chunks.glob("*.csv")}
    t.after_rerun.append(lambda: t.check({name: (chunks / name).read_bytes() for name in done} == done,
                                         "detection chunks finished before the kill changed"))
    return run


def kill_in_igos(t: Trial) -> Run:
    first = t.run_dir / "explain" / "a" / "chunk_0.npz"
    run = killed_when(t, first.is_file)
    explained = first.stat().st_mtime_ns if first.is_file() else None
    t.after_rerun.append(lambda: t.check(first.is_file() and first.stat().st_mtime_ns == explained,
                                         "an iGOS++ chunk finished before the kill was computed again"))
    return run


def kill_in_covidx_pp(t: Trial) -> Run:
    manifest = t.run_dir / "covidx_pp" / "manifest.csv"
    run = killed_when(t, manifest.is_file, poll=0.005)
    partial = pd.read_csv(manifest, dtype=str, keep_default_na=False) if manifest.is_file() else pd.DataFrame()
    built = {output: (manifest.parent / output).stat().st_mtime_ns for output in partial.get("output", [])}

    def reused() -> None:
        t.check(0 < len(partial) < len(pd.read_csv(manifest)), "the kill did not fall inside the COVIDx++ build")
        t.check({output: (manifest.parent / output).stat().st_mtime_ns for output in built} == built,
                "COVIDx++ images built before the kill were built again")

    t.after_rerun.append(reused)
    return run


def sigterm(t: Trial) -> Run:
    """SIGTERM to the CLI process alone (as `kill PID` sends it) once classifier A is trained; none of its child
    processes may outlive it by 10 s."""
    process, started = t.start()
    t.check(wait_for(process, (t.run_dir / "models" / "a.safetensors").is_file), "the run ended before SIGTERM")
    family = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        t.problems.append("the CLI was still running 120 s after SIGTERM")
    _, alive = psutil.wait_procs(family, timeout=10)
    t.check(not alive, f"{len(alive)} child process(es) outlived SIGTERM: "
            + ", ".join(sorted({_name(child) for child in alive})))
    return t.finish(process, started)  # kills what is left of the process group


def _name(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()[:3])[:80]
    except psutil.Error:
        return str(process.pid)


def image_deleted_mid_run(t: Trial) -> Run:
    """A test_decorrelated image deleted once the first text-detection chunk is written, restored after."""
    image = t.data / "test_decorrelated" / DECORRELATED_IMAGE
    original = image.read_bytes()
    process, started = t.start()
    try:
        t.check(wait_for(process, lambda: any((t.run_dir / "text" / "chunks").glob("*.csv"))),
                "the run ended before the deletion")
        image.unlink()
        return t.finish(process, started)
    finally:
        image.write_bytes(original)


# ---- the kinds: run-folder damage and the result store ----------------------------------------------------------


def pickled_record(t: Trial) -> Run:
    """The stored result of `compare` replaced by a pickle that creates a file when unpickled."""
    path, marker = record(t, "compare"), t.folder / "pickle-was-executed"
    path.write_bytes(pickle.dumps(Payload(marker)))
    run = t.audit()
    t.check(not marker.exists(), "the pickle in the result store was executed")
    t.check(is_sound_record(path), "the refused record was not replaced by a sound one")
    return run


def pickle_serializer_record(t: Trial) -> Run:
    """The stored result of `audit A` rewritten as a Prefect record naming the pickle serializer."""
    from prefect.serializers import PickleSerializer

    path, marker = record(t, "audit-a"), t.folder / "pickle-was-executed"
    stored = json.loads(path.read_bytes())
    serializer = PickleSerializer()
    stored["metadata"]["serializer"] = serializer.model_dump(mode="json")
    stored["result"] = serializer.dumps(Payload(marker)).decode()
    path.write_text(json.dumps(stored))
    run = t.audit()
    t.check(not marker.exists(), "the pickle in the result store was executed")
    t.check(is_sound_record(path), "the refused record was not replaced by a sound one")
    return run


def truncated_record(t: Trial) -> Run:
    path = record(t, "detect")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    run = t.audit()
    t.check(is_sound_record(path), "the truncated record was not replaced by a sound one")
    return run


def deleted_output(relative: str, same: Callable[[Path, Path], bool] | None = None) -> Callable[[Trial], Run]:
    """A kind that deletes one output of the run folder and expects the next run to write it again; `same(new,
    baseline's)` compares the two files where the output comparison (COMPARED) does not cover it."""

    def inject(t: Trial) -> Run:
        path = t.run_dir / relative
        path.unlink()
        run = t.audit()
        t.check(path.is_file(), f"{relative} was not written again")
        if same is not None and path.is_file():
            t.check(same(path, t.baseline / relative), f"{relative} differs from the baseline's")
        return run

    return inject


def same_bytes(path: Path, reference: Path) -> bool:
    return path.read_bytes() == reference.read_bytes()


def same_saliency(path: Path, reference: Path) -> bool:
    with np.load(path) as found, np.load(reference) as expected:
        return bool(np.allclose(found["saliency"], expected["saliency"], atol=1e-5))


def stale_temporary(t: Trial) -> Run:
    """A half-written temporary of the atomic writer (datasets/atomic.py's name pattern) left by a kill."""
    temporary = t.run_dir / "audit" / ".a.csv.k7q2x9w4.csv"
    temporary.write_text("filename,text_share\nhalf-writ")
    run = t.audit()
    t.check(not temporary.exists(), "the stale temporary file was left in place")
    return run


def moved_run_folder(t: Trial) -> Run:
    old, new = t.run_dir, t.folder / "moved" / "run"
    new.parent.mkdir()
    old.rename(new)
    t.run_dir = new
    checkpoint = new / "models" / "a.safetensors"
    trained = checkpoint.stat().st_mtime_ns
    run = t.audit()
    t.check(not old.exists(), "the old run folder was written again")
    t.check(checkpoint.stat().st_mtime_ns == trained, "classifier A was trained again")
    return run


def report_not_a_run(t: Trial) -> Run:
    return t.cli(["report", "data"])


HOLD = ("import sys, time; from flows.rundir import RunLock\n"
        "with RunLock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


def run_locked(t: Trial) -> Run:
    """run.lock held by another process (flows.rundir.RunLock) while the audit starts on the folder."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(t.run_dir)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        t.check(holder.stdout.readline().strip() == "held", "the lock holder did not start")
        before = digests(t.run_dir)
        run = t.audit()
        t.check(digests(t.run_dir) == before, "the refused run changed files of the held folder")
        return run
    finally:
        holder.kill()
        holder.wait()


# ---- the kinds: data change, the synthetic path ---------------------------------------------------------------


def image_with_text(run_dir: Path) -> str:
    """The first train image with detected text (from a run's detections)."""
    table = pd.read_csv(run_dir / "text" / "detections.csv", dtype=str, keep_default_na=False)
    return table[(table.split == "train") & (table.boxes != "[]")].filename.iloc[0]


def source_image_edited(t: Trial) -> Run:
    """A train image with text replaced by its text-free copy (data/clean), audited, then restored."""
    name = image_with_text(t.run_dir)
    chunks, model = t.run_dir / "text" / "chunks", t.run_dir / "models" / "a.safetensors"
    before, trained = mtimes(chunks, "train_*.csv"), model.stat().st_mtime_ns
    with replaced(t.data / "train" / name, (t.data / "clean" / "train" / name).read_bytes()):
        run = t.audit()
    after = mtimes(chunks, "train_*.csv")
    edited = next(chunk for chunk in sorted(after) if name in (chunks / chunk).read_text())
    t.check(after[edited] != before[edited], f"{edited} (the edited image's chunk) was not written again")
    t.check(image_with_text(t.run_dir) != name, "the edited image's detection still shows its old text")
    t.check(all(after[c] == before[c] for c in before if c != edited), "other detection chunks were redone")
    t.check(model.stat().st_mtime_ns != trained, "classifier A was not trained again on the edited image")
    return run


def test_label_corrected(t: Trial) -> Run:
    """A test image's label changed in the split file (a corrected label): both classifiers' predictions must
    carry the new label."""
    with edited_lines(t.data / TEST, lambda lines: [*lines[:3], set_field(lines[3], 2, "normal"), *lines[4:]]):
        run = t.audit()
    for m in "ab":
        table = pd.read_csv(t.run_dir / "predictions" / f"{m}_test_synthetic.csv", dtype=str)
        labels = table.loc[table.filename == TEST_IMAGE, "label"].tolist()
        t.check(labels == ["normal"], f"predictions/{m}_test_synthetic.csv gives {TEST_IMAGE} the label {labels}")
    return run


def generated_image(t: Trial) -> Path:
    return t.run_dir / "data" / "train" / TRAIN_IMAGE


def demo_generation_incomplete(t: Trial) -> Run:
    """What a kill during the generation leaves: no synthetic.json (written last), an image missing."""
    (t.run_dir / "data" / "synthetic.json").unlink()
    generated_image(t).unlink()
    return regenerated(t)


def demo_generated_image_edited(t: Trial) -> Run:
    """A generated image edited in the run's data/: once generated, data/ is the run's input (as a COVIDx folder
    is), so the edit is detected and A retrained on it; restored, the rerun equals the baseline."""
    image, model = generated_image(t), t.run_dir / "models" / "a.safetensors"
    trained = model.stat().st_mtime_ns
    with replaced(image, (t.run_dir / "data" / "clean" / "train" / TRAIN_IMAGE).read_bytes()):
        t.cli(t.demo_args())
    t.check(model.stat().st_mtime_ns != trained, "classifier A was not trained again on the edited image")
    return t.cli(t.demo_args())


def regenerated(t: Trial) -> Run:
    """Run the demo; the generated dataset must then equal the demo baseline's."""
    run = t.cli(t.demo_args())
    expected = digests(t.baseline / "data")
    t.check(digests(t.run_dir / "data") == expected, "the generated dataset was not restored")
    return run


# ---- the table of kinds -----------------------------------------------------------------------------------------


def split_error(*says: str) -> Expect:
    return Expect((2,), says)


def config_error(*says: str) -> Expect:
    return Expect((2,), says, within=QUICK_EXIT)


KINDS = (
    Kind("truncated-png", BAD_INPUT, f"train/{TRAIN_IMAGE} cut to 3/5 of its bytes", truncated_png,
         Expect(rejected=TRAIN_IMAGE)),
    Kind("zero-byte-image", BAD_INPUT, f"test/{TEST_IMAGE} (the audited split) emptied", zero_byte_image,
         Expect(rejected=TEST_IMAGE)),
    Kind("text-named-png", BAD_INPUT, f"train/{TRAIN_IMAGE} replaced by a line of text", text_named_png,
         Expect(rejected=TRAIN_IMAGE)),
    Kind("missing-image", BAD_INPUT, f"test_decorrelated/{DECORRELATED_IMAGE} deleted, still listed", missing_image,
         split_error(DECORRELATED, DECORRELATED_IMAGE)),
    Kind("garbage-dicom", BAD_INPUT, "train/garbage.dcm (4 KiB of random bytes) added to the train split",
         garbage_dicom, Expect(rejected="garbage.dcm")),
    Kind("dicom-without-pixels", BAD_INPUT, "train/nopixels.dcm (a DICOM without Pixel Data) added to the train split",
         dicom_no_pixels, Expect(rejected="nopixels.dcm")),
    Kind("short-split-line", BAD_INPUT, "line 5 of the train split without its label and source", short_split_line,
         split_error(f"{TRAIN}:5", "malformed line")),
    Kind("unknown-label", BAD_INPUT, "label `covid` on line 3 of the test split", unknown_label,
         split_error(f"{TEST}:3", "normal, pneumonia, COVID-19")),
    Kind("severity-labels", BAD_INPUT, "the test split labelled level1 / level2 (COVIDx severity)", severity_labels,
         split_error(f"{TEST}:1", "level1, level2")),
    Kind("repeated-lines", BAD_INPUT, "the first 2 train lines repeated verbatim at its end", repeated_lines,
         Expect()),
    Kind("conflicting-duplicate", BAD_INPUT, "train line 1 repeated at its end with another label",
         conflicting_duplicate, Expect()),
    Kind("duplicates-error", BAD_INPUT, "the same conflict with `data.duplicates: error`", duplicates_error,
         split_error(f"{TRAIN}:37", "line 1")),
    Kind("patient-overlap", BAD_INPUT, "test line 1 given a train patient's id", patient_overlap,
         split_error(TEST, "also in the training split")),
    Kind("patient-overlap-allowed", BAD_INPUT, "the same with `data.allow_patient_overlap: true`",
         patient_overlap_allowed, Expect()),
    Kind("unusual-line-breaks", BAD_INPUT, "train split lines separated by NEL (U+0085), test split by U+2028",
         unusual_line_breaks, Expect()),
    Kind("nul-split", BAD_INPUT, "the train split overwritten with NUL bytes", nul_split, split_error(TRAIN, "NUL")),
    Kind("empty-split", BAD_INPUT, "the test_decorrelated split emptied", empty_split,
         split_error(DECORRELATED, "no records")),
    Kind("missing-split", BAD_INPUT, "the test split file deleted", missing_split, split_error(TEST, "not found")),
    Kind("same-stem-test-splits", BAD_INPUT, f"--test-split {TEST} --test-split other/{TEST}", same_stem_splits,
         config_error("test_synthetic"), folder="none"),
    Kind("run-inside-data", BAD_INPUT, "--out data/audit-run (inside the source)", run_inside_data,
         config_error("inside the source"), folder="none"),
    Kind("negative-seed", CONFIG, "train.seed: -1", bad_config({"train": {"seed": -1}}), config_error("seed"),
         folder="none"),
    Kind("huge-mask", CONFIG, "explain.mask_size: 10000", bad_config({"explain": {"mask_size": 10000}}),
         config_error("mask_size"), folder="none"),
    Kind("huge-bootstrap", CONFIG, "compare.bootstrap: 10^12", bad_config({"compare": {"bootstrap": 10**12}}),
         config_error("bootstrap"), folder="none"),
    Kind("boolean-mask", CONFIG, "explain.mask_size: true", bad_config({"explain": {"mask_size": True}}),
         config_error("mask_size"), folder="none"),
    Kind("duplicate-yaml-key", CONFIG, "a second top-level `train:` mapping in the YAML", duplicate_yaml_key,
         config_error("duplicate key 'train'"), folder="none"),
    Kind("unknown-key", CONFIG, "train.epochz: 2 (a typo)", bad_config({"train": {"epochz": 2}}),
         config_error("epochz"), folder="none"),
    Kind("kill-in-detection", INTERRUPTION, "SIGKILL to the process group once 2 text-detection chunks are written",
         kill_in_detection, Expect((-9,)), folder="fresh"),
    Kind("kill-in-igos", INTERRUPTION, "SIGKILL once the first iGOS++ chunk of A is written", kill_in_igos,
         Expect((-9,)), folder="fresh"),
    Kind("kill-in-covidx-pp", INTERRUPTION, "SIGKILL once the COVIDx++ manifest is first written (every 2 images)",
         kill_in_covidx_pp, Expect((-9,)), folder="fresh"),
    Kind("sigterm", INTERRUPTION, "SIGTERM to the CLI process once classifier A is trained; its children checked",
         sigterm, Expect((-15, 143)), folder="fresh"),
    Kind("image-deleted-mid-run", INTERRUPTION, f"test_decorrelated/{DECORRELATED_IMAGE} deleted once the first "
         "detection chunk is written, restored after the run", image_deleted_mid_run,
         Expect(rejected=DECORRELATED_IMAGE), folder="fresh"),
    Kind("pickled-record", STORE, "the stored result of `compare` replaced by a pickle that creates a file",
         pickled_record, Expect(), rerun=False),
    Kind("pickle-serializer-record", STORE, "the stored result of `audit A` rewritten to name Prefect's pickle "
         "serializer, with such a pickle", pickle_serializer_record, Expect(), rerun=False),
    Kind("truncated-record", STORE, "a stored text-detection result cut to half its bytes", truncated_record,
         Expect(), rerun=False),
    Kind("deleted-covidx-pp-image", DAMAGE, f"covidx_pp/train/{TRAIN_IMAGE} deleted",
         deleted_output(f"covidx_pp/train/{TRAIN_IMAGE}", same_bytes), Expect(), rerun=False),
    Kind("deleted-predictions", DAMAGE, "predictions/b_test_synthetic.csv deleted",
         deleted_output("predictions/b_test_synthetic.csv"), Expect(), rerun=False),
    Kind("deleted-checkpoint", DAMAGE, "models/a.safetensors deleted", deleted_output("models/a.safetensors"),
         Expect(), rerun=False),
    Kind("deleted-explain-chunk", DAMAGE, "explain/a/chunk_0.npz deleted",
         deleted_output("explain/a/chunk_0.npz", same_saliency), Expect(), rerun=False),
    Kind("stale-temporary", DAMAGE, "audit/.a.csv.k7q2x9w4.csv (an atomic write's temporary) left half-written",
         stale_temporary, Expect(), rerun=False),
    Kind("moved-run-folder", DAMAGE, "the run folder moved to another path, then the audit run there",
         moved_run_folder, Expect(), rerun=False),
    Kind("report-not-a-run", DAMAGE, "`cxr-audit report data` (the source folder, not a run)", report_not_a_run,
         config_error("not a run folder"), folder="none"),
    Kind("run-locked", DAMAGE, "run.lock held by another process (flows.rundir.RunLock)", run_locked,
         Expect((3,), ("in use",), within=60)),
    Kind("source-image-edited", DATA_CHANGE, "a train image with text replaced by its text-free copy, audited, "
         "then restored", source_image_edited, Expect()),
    Kind("test-label-corrected", DATA_CHANGE, f"the label of {TEST_IMAGE} in the test split changed from pneumonia "
         "to normal, audited, then restored", test_label_corrected, Expect()),
    Kind("demo-generation-incomplete", DAMAGE, "demo: data/synthetic.json and one generated image deleted (what a "
         "kill during generation leaves)", demo_generation_incomplete, Expect(), folder="demo", rerun=False),
    Kind("demo-generated-image-edited", DATA_CHANGE, "demo: a generated train image replaced by its text-free copy, "
         "audited, then restored",
         demo_generated_image_edited, Expect(), folder="demo", rerun=False),
)


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
    table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False)
    return table.drop(columns="seconds") if path.name == "detections.csv" else table


def summary_differences(run_dir: Path, reference: Path) -> list[str]:
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


# ---- running the kinds ------------------------------------------------------------------------------------------


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


# ---- the report -------------------------------------------------------------------------------------------------


def cell(text: str, length: int = MESSAGE_LENGTH) -> str:
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
    out: dict[str, dict] = {}
    for row in rows:
        numbers = out.setdefault(row["category"], {"kinds": 0, "passed": 0, "wall_seconds": 0.0})
        numbers["kinds"] += 1
        numbers["passed"] += row["passed"]
        numbers["wall_seconds"] = round(numbers["wall_seconds"] + row["wall_seconds"], 1)
    return out


# ---- CLI --------------------------------------------------------------------------------------------------------


def selected(only: str | None) -> list[Kind]:
    if not only:
        return list(KINDS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(names) - {kind.name for kind in KINDS})
    if unknown:
        raise SystemExit(f"unknown kind(s): {', '.join(unknown)} (--list shows them)")
    return [kind for kind in KINDS if kind.name in names]


def baselines(work: Path, kinds: Sequence[Kind]) -> dict[str, float | None]:
    """Run the baselines the kinds need: folder name → seconds (None: reused from an earlier run)."""
    needed = {"baseline": any(kind.folder in ("copy", "fresh") for kind in kinds),
              "baseline-demo": any(kind.folder == "demo" for kind in kinds)}
    return {name: baseline(work, name == "baseline-demo") for name, wanted in needed.items() if wanted}


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
