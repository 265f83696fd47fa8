"""The fault run's kinds that strike a run (`python -m benchmarks.faults`): interruptions (SIGKILL at three
points, SIGTERM, an image lost mid-run), a tampered or truncated result store, a damaged run folder, and changed
data (an edited source image, a corrected label, the demo's generated dataset). RUN_KINDS is their part of the
table of kinds, in the order the run takes them."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil  # a dependency of dask.distributed (prefect-dask)

from benchmarks.common import ROOT
from benchmarks.faults_trial import (
    DECORRELATED_IMAGE,
    TEST,
    TEST_IMAGE,
    TRAIN_IMAGE,
    Expect,
    Kind,
    Run,
    Trial,
    config_error,
    digests,
    edited_lines,
    killed_when,
    mtimes,
    replaced,
    set_field,
    wait_for,
)

INTERRUPTION, DAMAGE, STORE, DATA_CHANGE = "interruption", "run-folder damage", "result store", "data change"


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


# ---- interruption -----------------------------------------------------------------------------------------------


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


# ---- run-folder damage and the result store ---------------------------------------------------------------------


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


# ---- data change, the synthetic path ----------------------------------------------------------------------------


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


# ---- the table --------------------------------------------------------------------------------------------------


RUN_KINDS = (
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

