"""The audit's stages as Prefect tasks: each calls one `pipeline` function and writes its files into the run folder.

Each task's Prefect cache policy (`ContentKey`) derives its content key from its inputs: dataset digest or the
records' file hashes, checkpoint digests, stage configs. Results persist in the run folder's store (flows/results.py,
set by `build_flow`); `fresh_task` reuses a cached result only while the files the task wrote are unchanged.
A per-image task whose images failed with a transient I/O error is retried (RETRIES), then the
stage's record of the reject stays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import Task, get_run_logger, task
from prefect.futures import PrefectFuture
from prefect.utilities.callables import get_call_parameters

from datasets.atomic import file_sha256, sha256_of, write_text
from datasets.covidx import DuplicatePolicy, Record, SplitRead, check_disjoint, read_split_checked
from datasets.errors import FileWriteError
from datasets.rejects import REJECTED_COLUMNS, Rejected
from datasets.synthetic import read_truth
from flows.config import RunConfig
from flows.results import RESULT_SERIALIZER, current_run_folder
from flows.rundir import ContentKey, content_key
from pipeline import audit as audit_stage
from pipeline import compare as compare_stage
from pipeline import explain as explain_stage
from pipeline import predict as predict_stage
from pipeline import text as text_stage
from pipeline import train as train_stage
from pipeline.checkpoint import checkpoint_digest, read_meta
from pipeline.clean import build_clean_dataset, resolve_splits

RETRIES, RETRY_DELAY = 2, 1  # a per-image task with transient I/O errors is retried, then the stage's record stays


def _worth_retrying(task: Task, task_run: object, state: object) -> bool:
    """Prefect's retry condition: retry an I/O error (a flaky disk or share may recover), never bad input or
    a bug (a malformed split line fails at once, with its own message) and never a full disk."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, OSError) and not isinstance(error, FileWriteError)


def stage_task(name: str, key: Callable[[dict[str, Any]], str], **options: object) -> Callable[[Callable], Task]:
    """A Prefect task cached on `key(inputs)` (its `ContentKey` policy), with its result persisted (resume after
    a kill); with `retries`, only I/O errors are retried (`_worth_retrying`)."""
    if options.get("retries"):
        options["retry_condition_fn"] = _worth_retrying
    return task(name=name, cache_policy=ContentKey(derive=key), persist_result=True,
                result_serializer=RESULT_SERIALIZER, **options)


def _described(records: Sequence[Record]) -> list[str]:
    """Records as keyed: what a table of them holds (filename, label, patient, source) and each image's sha256."""
    return [f"{r.filename}:{r.label}:{r.patient_id}:{r.source}:{file_sha256(r.path)}" for r in records]


def _train_key(inputs: dict[str, Any]) -> str:
    """A checkpoint's key: where it goes in the run folder, the training records and the training config."""
    config = inputs["config"]
    out_path = inputs["out_path"]
    return content_key(f"train-{out_path.stem}", out_path.relative_to(config.run_dir).as_posix(), config.train,
                       *_described(inputs["records"]))


def _audit_key(inputs: dict[str, Any]) -> str:
    """An audit's key: the classifier, its saliency's config, the detections, the audit config and the records."""
    config = inputs["config"]
    return content_key(f"audit-{inputs['checkpoint'].stem}", checkpoint_digest(inputs["checkpoint"]),
                       sha256_of(inputs["detections_csv"]), config.audit, config.explain, inputs["split"],
                       *_described(inputs["records"]))


def _compare_key(inputs: dict[str, Any]) -> str:
    """The comparison's key: the predictions of A and B on every split, A's audit flags and the compare config."""
    run_dir = inputs["run_dir"]
    return content_key("compare", *(sha256_of(run_dir / "predictions" / f"{m}_{s}.csv") for m in "ab"
                                    for s in inputs["splits"]),
                       sha256_of(run_dir / "audit" / "a.csv"), inputs["config"].compare)


@dataclass(frozen=True)
class Split:
    """A split file of the dataset and its image folder; `records` have resolved image paths. `duplicates`:
    what a filename listed twice with other fields does (`datasets.covidx.read_split_checked`)."""

    name: str
    split_file: Path
    image_dir: Path
    duplicates: DuplicatePolicy = "keep_first"

    def read(self) -> SplitRead:
        return read_split_checked(self.split_file, self.image_dir, duplicates=self.duplicates)

    def records(self) -> list[Record]:
        return list(self.read().records)


@dataclass(frozen=True)
class Data:
    """The dataset of a run: root, training split, test splits, audited split name, and its digest."""

    root: Path
    train: Split
    tests: dict[str, Split]
    audit_split: str
    synthetic: bool
    digest: str


class TransientIOError(OSError):
    """Images of a per-image task failed with an I/O error that a retry may cure: Prefect retries the task."""


def _retry_transient(stage_name: str, rejected: Sequence[Rejected]) -> None:
    """Raise TransientIOError while this task has retries left and one of its rejects is a transient I/O error
    (datasets.rejects); on the last attempt return, and the stage's record of it stays."""
    from prefect.runtime import task_run

    flaky = sorted(item.filename for item in rejected if item.transient)
    if flaky and task_run.run_count <= RETRIES:
        raise TransientIOError(f"{stage_name}: I/O error reading {len(flaky)} image(s), e.g. {flaky[0]}: "
                               f"retrying the task (attempt {task_run.run_count} of {RETRIES + 1})")


@stage_task("prepare-data", lambda inputs: content_key("data", inputs["config"].data, data_state(inputs["config"])),
            retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def prepare_data(config: RunConfig) -> Data:
    """Check the dataset folder (generated by `generate_synthetic` when synthetic), validate the splits, hash
    the data."""
    spec = config.data
    synthetic = spec.root is None
    root = data_root(config)
    folders = resolve_splits(root, [spec.train_split, *spec.test_splits.values()])
    train_file = (root / spec.train_split).resolve()
    train = Split("train", train_file, folders[train_file], spec.duplicates)
    tests = {name: Split(name, (root / file).resolve(), folders[(root / file).resolve()], spec.duplicates)
             for name, file in spec.test_splits.items()}
    reads = {split.name: split.read() for split in (train, *tests.values())}
    records = {name: list(read.records) for name, read in reads.items()}
    overlap = {}
    for name in tests:  # synthetic test_decorrelated shares test's patients on purpose (paired)
        shared = check_disjoint(records["train"], records[name], test_path=tests[name].split_file,
                                allow=spec.allow_patient_overlap)
        if shared:
            overlap[name] = {"patients": len(shared),
                             "filenames": [r.filename for r in records[name] if r.patient_id in shared]}
    write_data_quality(config.run_dir / "data_quality.json", [train, *tests.values()], reads, overlap)
    digest = content_key("data", *(sha256_of(s.split_file) for s in (train, *tests.values())),
                         *(file_sha256(r.path) for split in records.values() for r in split))
    return Data(root, train, tests, spec.audit_split, synthetic, digest)


@stage_task("detect-text", lambda inputs: content_key("detect", inputs["config"].text, inputs["split"], *(
    f"{r.filename}:{file_sha256(r.path)}" for r in inputs["records"])),
            retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def detect_text_chunk(records: list[Record], out_csv: Path, config: RunConfig, split: str) -> Path:
    """CRAFT boxes of one chunk of images → one detections CSV (rows of text/detections.csv)."""
    table = text_stage.detect_split(records, out_csv, config=config.text, split=split)
    _retry_transient("detect-text", [Rejected(row.filename, row.reason, row.transient) for row in table.rows
                                     if row.status == "rejected"])
    return out_csv


@stage_task("train-classifier", _train_key)
def train_classifier(records: list[Record], out_path: Path, config: RunConfig) -> Path:
    """Train one classifier; returns its checkpoint path."""
    result = train_stage.train_classifier(records, out_path, config.train)
    _write_rejects(out_path.parents[1] / "rejected" / f"train_{out_path.stem}.csv", "train", "train", result.rejected)
    get_run_logger().info("%s: epoch %d selected, validation %s, %.0f s", out_path.name, result.epoch,
                          {k: round(v, 3) for k, v in result.validation.items()}, result.seconds)
    return result.checkpoint


@stage_task("predict", lambda inputs: content_key("predict", checkpoint_digest(inputs["checkpoint"]),
                                                  inputs["out_csv"].name, *_described(inputs["records"])),
            retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def predict(checkpoint: Path, records: list[Record], out_csv: Path) -> Path:
    """Predictions of one checkpoint on one split (predictions/<m>_<split>.csv)."""
    result = predict_stage.predict_split(checkpoint, records, out_csv)
    _write_rejects(out_csv.parents[1] / "rejected" / f"predict_{out_csv.stem}.csv", "predict", out_csv.stem,
                   result.rejected)
    _retry_transient("predict", result.rejected)
    return out_csv


@stage_task("explain-chunk", lambda inputs: content_key("explain", explain_stage.chunk_hash(
    checkpoint_digest(inputs["checkpoint"]), inputs["config"].explain, inputs["records"], inputs["split"])),
            retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def explain_chunk(checkpoint: Path, records: list[Record], run_dir: Path, config: RunConfig, split: str,
                  chunk: int) -> int:
    """iGOS++ maps of one chunk (explain/<m>/chunk_<k>.npz); returns the images explained."""
    result = explain_stage.explain_chunk(checkpoint, records, run_dir, config.explain, split=split, chunk=chunk)
    _retry_transient("explain", result.rejected)
    return result.explained


@stage_task("audit", _audit_key)
def audit(checkpoint: Path, records: list[Record], run_dir: Path, detections_csv: Path, config: RunConfig,
          truth_root: Path | None, split: str) -> Path:
    """Text-saliency shares, flags and counterfactuals of one classifier on the audited split, and how good
    the flags are: against the ground truth on synthetic data, else against the counterfactuals."""
    name = checkpoint.stem
    saliency = explain_stage.load_saliency(run_dir / "explain" / name)
    detections = text_stage.read_detections(detections_csv, split=split)
    truth = (read_truth(truth_root, split), truth_root) if truth_root is not None else None
    result = audit_stage.audit_split(checkpoint, records, saliency, detections, run_dir, config.audit, truth=truth,
                                     split=split)
    if truth_root is not None:
        changed, reference = audit_stage.truth_prediction_changed(checkpoint, records, truth_root), "ground truth"
        truth_table = pd.DataFrame({"filename": list(changed), "prediction_changed": list(changed.values())})
        write_text(run_dir / "audit" / f"{name}_flag_truth.csv", truth_table.to_csv(index=False, lineterminator="\n"))
    else:
        tried = result.table[result.table.counterfactual]
        changed = dict(zip(tried.filename, tried.cf_prediction_changed.astype(bool), strict=True))
        reference = ("counterfactual (every image with detected text)"
                     if config.audit.flag_by == "counterfactual" or config.audit.cf_unflagged_fraction >= 1
                     else "counterfactual (flagged images and a sample of the others)")
        if config.audit.flag_by == "counterfactual":
            reference += "; the run's flags are that counterfactual, so only the share flags are measured here"
    # The run's flags (config.audit.flag_by); flags from the saliency share alone; the share confirmed by the
    # counterfactual (high share, and the prediction changed when the detected text was inpainted); and the
    # counterfactual alone: the heatmap is a lead, the counterfactual the evidence.
    table, cf_changed = result.table, result.table.cf_prediction_changed.eq(True)
    high_share = table.text_share >= config.audit.threshold
    quality = audit_stage.flag_quality(table, changed)
    for kind, flags in (("share_flag", high_share), ("confirmed", high_share & cf_changed),
                        ("counterfactual", cf_changed)):
        quality.update({f"{kind}_{measure.removeprefix('flag_')}": value for measure, value in
                        audit_stage.flag_quality(table.assign(flagged=flags), changed).items()
                        if measure.startswith("flag_")})
    quality = {key: None if isinstance(value, float) and math.isnan(value) else value  # JSON has no NaN
               for key, value in quality.items()}
    quality.update(flag_reference=reference, flag_by=config.audit.flag_by, flag_threshold=config.audit.threshold)
    write_text(run_dir / "audit" / f"{name}_quality.json", json.dumps(quality, indent=1) + "\n")
    return result.table_path


@stage_task("build-covidx-pp", lambda inputs: content_key("covidx-pp", inputs["data"].digest, sha256_of(
    inputs["detections_csv"]), inputs["config"].clean), retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def build_covidx_pp(data: Data, run_dir: Path, detections_csv: Path, config: RunConfig) -> Path:
    """COVIDx++: the detected text of the training and audited images inpainted into <run_dir>/covidx_pp."""
    audited = data.tests[data.audit_split]
    splits = {data.train.split_file: data.train.image_dir, audited.split_file: audited.image_dir}
    detections = {}
    for split in (data.train, audited):
        folder = split.image_dir.relative_to(data.root).as_posix()
        found = text_stage.read_detections(detections_csv, split=split.name)
        detections.update({f"{folder}/{filename}": boxes for filename, boxes in found.items()})
    manifest = build_clean_dataset(data.root, run_dir / "covidx_pp", splits, config=config.clean,
                                   detections=detections)
    get_run_logger().info("COVIDx++: %s", manifest.counts())
    _retry_transient("build-covidx-pp", [Rejected(row.source, row.reason, row.transient) for row in manifest.rows
                                         if row.status == "rejected"])
    return manifest.path


@stage_task("compare", _compare_key)
def compare(run_dir: Path, splits: list[str], config: RunConfig) -> Path:
    """The paired comparison of A and B on every test split, per source and flagged stratum, on the images both
    predicted (one that became unreadable between the two is a row of rejected/compare.csv)."""
    flagged = pd.read_csv(run_dir / "audit" / "a.csv", usecols=["filename", "flagged"], dtype={"filename": str})
    pairs, unpaired = {}, []
    for split in splits:
        before, after = (pd.read_csv(run_dir / "predictions" / f"{m}_{split}.csv", dtype={"filename": str})
                         for m in ("a", "b"))
        both = set(before.filename) & set(after.filename)
        for m, table in (("a", before), ("b", after)):
            unpaired += [{"stage": "compare", "split": split, "filename": filename, "reason": (
                f"predicted by {m.upper()} only: the image could not be read when the other classifier ran")}
                for filename in table.filename if filename not in both]
        pairs[split] = (with_flags(before[before.filename.isin(both)], flagged),
                        with_flags(after[after.filename.isin(both)], flagged))
    write_text(run_dir / "rejected" / "compare.csv",
               pd.DataFrame(unpaired, columns=REJECTED_COLUMNS).to_csv(index=False, lineterminator="\n"))
    labels = read_meta(run_dir / "models" / "a.safetensors").labels  # 3-class or binary COVIDx
    comparison = compare_stage.compare_splits(pairs, labels=labels, n_resamples=config.compare.bootstrap,
                                              confidence=config.compare.confidence, seed=config.compare.seed)
    compare_stage.write_comparison(comparison, run_dir)
    return run_dir / "compare" / "metrics.csv"


def write_data_quality(path: Path, splits: Sequence[Split], reads: dict[str, SplitRead], overlap: dict[str, dict]
                       ) -> Path:
    """data_quality.json: per split, the lines read once as exact repeats and the filenames listed again with
    other fields (the first line kept); per test split, the patients also in training (accepted with
    `data.allow_patient_overlap`), by count and test filename. Patient ids are left out: in COVIDx they
    come from the sources' DICOM headers."""
    found = {split.name: {"file": split.split_file.name, "records": len(reads[split.name].records),
                          "repeated_lines": reads[split.name].repeated_line_count,
                          "conflicts": [{"filename": c.filename, "kept_line": c.kept_line,
                                         "dropped_line": c.dropped_line, "differs": list(c.differs)}
                                        for c in reads[split.name].conflicts]}
             for split in splits}
    return write_text(path, json.dumps({"splits": found, "patient_overlap": overlap}, indent=1) + "\n")


@dataclass(frozen=True)
class FreshTask:
    """A stage task whose cached result is used only while the files it wrote are still the ones it wrote.

    After a task runs, the sha256 of its `outputs` is recorded under its content key (`key`: what its
    `ContentKey` policy makes of the call's inputs; `.prefect/outputs/<key>.json`, paths relative to the run
    folder); the next time the key comes up, the cached result is ignored and the task runs again when a file
    is missing or differs, e.g. overwritten by a run on other data in the same folder. `present` files (the
    COVIDx++ images) are only checked to exist: the manifest's hash covers them.
    """

    stage_task: Task
    outputs: tuple[Path, ...]
    present: tuple[Path, ...] = ()

    def key(self, *args: object, **kwargs: object) -> str:
        """The content key Prefect caches this call's result under."""
        return self.stage_task.cache_policy.derive(get_call_parameters(self.stage_task.fn, args, kwargs))

    def __call__(self, *args: object, **kwargs: object) -> object:
        key = self.key(*args, **kwargs)
        unchanged = self._unchanged(key)
        result = self.stage_task.with_options(refresh_cache=not unchanged)(*args, **kwargs)
        if not unchanged:
            self.remember(key)
        return result

    def submit(self, *args: object, **kwargs: object) -> Submitted:
        """The task submitted to the task runner; its outputs are recorded when `result()` is taken."""
        key = self.key(*args, **kwargs)
        return Submitted(self, key, self.stage_task.with_options(refresh_cache=not self._unchanged(key)).submit(
            *args, **kwargs))

    def remember(self, key: str) -> None:
        folder = current_run_folder()
        digests = {path.relative_to(folder).as_posix(): sha256_of(path) for path in self.outputs}
        write_text(folder / ".prefect" / "outputs" / f"{key}.json", json.dumps(digests, indent=1) + "\n")

    def _unchanged(self, key: str) -> bool:
        folder = current_run_folder()
        try:
            recorded = json.loads((folder / ".prefect" / "outputs" / f"{key}.json").read_text())
        except (OSError, ValueError):
            recorded = None
        return recorded is not None and all(path.is_file() for path in self.present) and all(
            recorded.get(path.relative_to(folder).as_posix()) == file_sha256(path) for path in self.outputs)


@dataclass(frozen=True)
class Submitted:
    """A `FreshTask` submitted to the task runner under `key`."""

    fresh: FreshTask
    key: str
    future: PrefectFuture

    def result(self) -> object:
        """The task's result, once its outputs are recorded under its key."""
        value = self.future.result()
        self.fresh.remember(self.key)
        return value


def fresh_task(stage_task: Task, *outputs: Path, present: Sequence[Path] = ()) -> FreshTask:
    """`stage_task` reusing its cached result only while `outputs` are as it wrote them (`FreshTask`)."""
    return FreshTask(stage_task, outputs, tuple(present))


def with_flags(predictions: pd.DataFrame, flagged: pd.DataFrame) -> pd.DataFrame:
    """Predictions with A's audit flag (False where the image was not audited)."""
    out = predictions.merge(flagged, on="filename", how="left")
    out["flagged"] = out["flagged"].fillna(False).astype(bool)
    return out


def _write_rejects(path: Path, stage_name: str, split: str, rejected: Sequence[Rejected]) -> None:
    """A stage's rejects as `stage, split, filename, reason` rows."""
    rows = [{"stage": stage_name, "split": split, "filename": item.filename, "reason": item.reason}
            for item in rejected]
    write_text(path, pd.DataFrame(rows, columns=REJECTED_COLUMNS).to_csv(index=False, lineterminator="\n"))


def data_root(config: RunConfig) -> Path:
    """The dataset folder of a run: the COVIDx folder given, or the run's generated `data/`."""
    return (config.run_dir / "data" if config.data.root is None else config.data.root).resolve()


def data_state(config: RunConfig) -> object:
    """Part of the data key, so that a rerun sees a changed dataset: the (name relative to the dataset folder,
    bytes, mtime) of its split files and of every file in their image folders (an edited, added or removed
    image changes it; reading no image, it stays cheap on large folders, and a moved run folder keeps it).
    `prepare_data` then hashes the listed images' contents."""
    root = data_root(config)
    files = [root / name for name in (config.data.train_split, *config.data.test_splits.values())]
    try:
        folders = set(resolve_splits(root, files).values())
    except (OSError, ValueError):
        return "unresolved"  # prepare_data runs and reports the problem
    files += [path for folder in sorted(folders) for path in folder.rglob("*") if path.is_file()]
    return [(str(path.relative_to(root)), (stat := path.stat()).st_size, stat.st_mtime_ns)
            for path in files if path.exists()]
