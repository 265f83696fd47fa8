"""The dataset audit as a Prefect flow: train A, explain and audit it, build COVIDx++, train B, compare, report.

    audit_flow(config)
      prepare_data          synthetic dataset (generated) or a COVIDx folder (validated), + data digest
      detect_text           CRAFT on the training and audited images, chunk by chunk
      train_classifier A    predict A on every test split
      explain A             iGOS++ over the audited split, chunk by chunk
      audit A               text-saliency share, flags, counterfactuals
      build_covidx_pp       detected text inpainted into <run_dir>/covidx_pp (the source is only read)
      train_classifier B    on COVIDx++; predict A and B on every test split and on <audit split>_pp
      explain B, audit B    did the saliency leave the text?
      compare               paired metrics, bootstrap intervals, McNemar
      summary.json, report.html

The flow holds no algorithm: every task calls one `pipeline` function that writes its files into the
run folder (docs/run-directory.md). Tasks are keyed on content (dataset digest, checkpoint digests,
stage configs) and their results persist in `<run_dir>/.prefect`, so a rerun, or a run resumed after a
kill, reuses what is done; the chunked stages (text detection, explanation) also skip their finished
chunk files themselves. A task whose recorded outputs have gone missing runs again.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from datasets.atomic import MISSING, file_sha256, remove_stale_temporaries, sha256_of, write_text
from datasets.covidx import DuplicatePolicy, Record, SplitRead, check_disjoint, read_split_checked
from datasets.errors import FileWriteError
from datasets.faults import is_transient
from datasets.synthetic import MANIFEST as SYNTHETIC_MANIFEST
from datasets.synthetic import generate, read_truth
from flows.config import AuditConfig, SyntheticData
from flows.progress import StageTime, stage, stage_times
from flows.results import RESULT_SERIALIZER, store_results_in
from flows.rundir import RunLock, content_key
from pipeline import audit as audit_stage
from pipeline import changes as changes_stage
from pipeline import compare as compare_stage
from pipeline import explain as explain_stage
from pipeline import predict as predict_stage
from pipeline import text as text_stage
from pipeline import train as train_stage
from pipeline.checkpoint import checkpoint_digest, read_meta
from pipeline.clean import build_clean_dataset, expected_outputs, resolve_splits

LOG = logging.getLogger(__name__)
VERSIONED = ("cxr-audit", "torch", "torchvision", "easyocr", "prefect", "opencv-python-headless", "pydicom")
REJECTED_COLUMNS = ("stage", "split", "filename", "reason")
QUALITY_KEYS = ("flag_precision", "flag_recall", "share_flag_precision", "share_flag_recall", "confirmed_precision",
                "confirmed_recall", "counterfactual_precision", "counterfactual_recall", "share_roc_auc",
                "top5_share_roc_auc", "truth_share_roc_auc", "flag_reference", "flag_by", "flag_threshold")
RETRIES, RETRY_DELAY = 2, 1  # a per-image task with transient I/O errors is retried, then the stage's record stays


def _cache_key(context: object, parameters: dict) -> str:
    """Prefect cache key of a stage task: the content key the flow computed and passed in as `key`."""
    return parameters["key"]


def _worth_retrying(task: Task, task_run: object, state: object) -> bool:
    """Prefect's retry condition: retry an I/O error (a flaky disk or share may recover), never bad input or
    a bug (a malformed split line fails at once, with its own message) and never a full disk."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, OSError) and not isinstance(error, FileWriteError)


def stage_task(name: str, **options: object):
    """A Prefect task keyed on its `key` parameter, with its result persisted (resume after a kill); with
    `retries`, only I/O errors are retried (`_worth_retrying`)."""
    if options.get("retries"):
        options["retry_condition_fn"] = _worth_retrying
    return task(name=name, cache_key_fn=_cache_key, persist_result=True, result_serializer=RESULT_SERIALIZER,
                **options)


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


# ---- tasks ----------------------------------------------------------------------------------------


class TransientIOError(OSError):
    """Images of a per-image task failed with an I/O error that a retry may cure: Prefect retries the task."""


def _retry_transient(stage_name: str, rejected: Sequence[tuple[str, str]]) -> None:
    """Raise TransientIOError while this task has retries left and one of its (filename, reason) rejects is a
    transient I/O error (datasets.faults); on the last attempt return, and the stage's record of it stays."""
    from prefect.runtime import task_run

    flaky = sorted(filename for filename, reason in rejected if is_transient(reason))
    if flaky and task_run.run_count <= RETRIES:
        raise TransientIOError(f"{stage_name}: I/O error reading {len(flaky)} image(s), e.g. {flaky[0]}: "
                               f"retrying the task (attempt {task_run.run_count} of {RETRIES + 1})")


@stage_task("prepare-data", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def prepare_data(config: AuditConfig, key: str) -> Data:
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
                         *(image_hash(r.path) for split in records.values() for r in split))
    return Data(root, train, tests, spec.audit_split, synthetic, digest)


@stage_task("detect-text", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def detect_text_chunk(records: list[Record], out_csv: Path, config: AuditConfig, split: str, key: str) -> Path:
    """CRAFT boxes of one chunk of images → one detections CSV (rows of text/detections.csv)."""
    table = text_stage.detect_split(records, out_csv, config=config.text, split=split)
    _retry_transient("detect-text", [(row.filename, row.reason) for row in table.rows if row.status == "rejected"])
    return out_csv


@stage_task("train-classifier")
def train_classifier(records: list[Record], out_path: Path, config: AuditConfig, key: str) -> Path:
    """Train one classifier; returns its checkpoint path."""
    result = train_stage.train_classifier(records, out_path, config.train)
    _write_rejects(out_path.parents[1] / "rejected" / f"train_{out_path.stem}.csv", "train", "train", result.rejected)
    get_run_logger().info("%s: epoch %d selected, validation %s, %.0f s", out_path.name, result.epoch,
                          {k: round(v, 3) for k, v in result.validation.items()}, result.seconds)
    return result.checkpoint


@stage_task("predict", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def predict(checkpoint: Path, records: list[Record], out_csv: Path, key: str) -> Path:
    """Predictions of one checkpoint on one split (predictions/<m>_<split>.csv)."""
    result = predict_stage.predict_split(checkpoint, records, out_csv)
    _write_rejects(out_csv.parents[1] / "rejected" / f"predict_{out_csv.stem}.csv", "predict", out_csv.stem,
                   result.rejected)
    _retry_transient("predict", [(item.filename, item.reason) for item in result.rejected])
    return out_csv


@stage_task("explain-chunk", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def explain_chunk(checkpoint: Path, records: list[Record], run_dir: Path, config: AuditConfig, split: str,
                  chunk: int, key: str) -> int:
    """iGOS++ maps of one chunk (explain/<m>/chunk_<k>.npz); returns the images explained."""
    result = explain_stage.explain_chunk(checkpoint, records, run_dir, config.explain, split=split, chunk=chunk)
    _retry_transient("explain", result.rejected)
    return result.explained


@stage_task("audit")
def audit(checkpoint: Path, records: list[Record], run_dir: Path, detections_csv: Path, config: AuditConfig,
          truth_root: Path | None, split: str, key: str) -> Path:
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


@stage_task("build-covidx-pp", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def build_covidx_pp(data: Data, run_dir: Path, detections_csv: Path, config: AuditConfig, key: str) -> Path:
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
    _retry_transient("build-covidx-pp", [(row.source, row.reason) for row in manifest.rows if row.status == "rejected"])
    return manifest.path


@stage_task("compare")
def compare(run_dir: Path, splits: list[str], config: AuditConfig, key: str) -> Path:
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
        pairs[split] = (_with_flags(before[before.filename.isin(both)], flagged),
                        _with_flags(after[after.filename.isin(both)], flagged))
    write_text(run_dir / "rejected" / "compare.csv",
               pd.DataFrame(unpaired, columns=REJECTED_COLUMNS).to_csv(index=False, lineterminator="\n"))
    labels = read_meta(run_dir / "models" / "a.safetensors").labels  # 3-class or binary COVIDx
    comparison = compare_stage.compare_splits(pairs, labels=labels, n_resamples=config.compare.bootstrap,
                                              confidence=config.compare.confidence, seed=config.compare.seed)
    compare_stage.write_comparison(comparison, run_dir)
    return run_dir / "compare" / "metrics.csv"


# ---- the flow -------------------------------------------------------------------------------------


@flow(name="dataset-audit", task_runner=ThreadPoolTaskRunner(max_workers=1))
def audit_flow(config: AuditConfig) -> dict:
    """Run the whole audit into `config.run_dir`; returns the headline numbers (summary.json)."""
    started = time.perf_counter()
    # Absolute from here on: the persisted task results hold paths, and a rerun may start in another directory.
    config = config.model_copy(update={"run_dir": config.run_dir.resolve()})
    run_dir = config.run_dir
    with RunLock(run_dir):
        for stale in remove_stale_temporaries(run_dir, skip=(".prefect",)):  # a killed run's half-written files
            LOG.info("removed %s, left by an interrupted write", stale)
        store_results_in(run_dir)
        write_text(run_dir / "config.yaml", config.to_yaml())
        first_stage = len(stage_times())
        with stage("prepare data"):
            generate_synthetic(config)
            data = _fresh(prepare_data, run_dir / "data_quality.json")(
                config, key=content_key("data", config.data, _data_state(config)))
            audited = data.tests[data.audit_split]
            train_records = data.train.records()
            tests = {name: split.records() for name, split in data.tests.items()}
            audit_records = tests[data.audit_split]
        counts = {"train": len(train_records), **{name: len(records) for name, records in tests.items()}}
        source_records = {"train": train_records, **tests}

        with stage("text detection", total=len(train_records) + len(audit_records)) as advance:
            detections = detect_text(data, config, [("train", train_records), (data.audit_split, audit_records)],
                                     advance)
        a_path = run_dir / "models" / "a.safetensors"
        with stage("train A"):
            a = _fresh(train_classifier, a_path, a_path.with_suffix(".json"))(
                train_records, a_path, config, key=content_key("train-a", data.digest, config.train))
        with stage("predict A", total=sum(counts.values()) - len(train_records)) as advance:
            for name, records in tests.items():
                _predict(a, records, run_dir / "predictions" / f"a_{name}.csv")
                advance(len(records))
        with stage("iGOS++ of A", total=len(audit_records)) as advance:
            _explain(a, audit_records, run_dir, config, data.audit_split, advance)
        truth_root = data.root if data.synthetic else None
        with stage("audit A", total=len(audit_records)):
            _fresh(audit, run_dir / "audit" / "a.csv", run_dir / "audit" / "a_quality.json")(
                a, audit_records, run_dir, detections, config, truth_root, data.audit_split,
                key=content_key("audit-a", checkpoint_digest(a), sha256_of(detections), config.audit, data.digest))

        with stage("COVIDx++", total=len(train_records) + len(audit_records)):
            key = content_key("covidx-pp", data.digest, sha256_of(detections), config.clean)
            built = expected_outputs(run_dir / "covidx_pp")  # the split files hold patients and labels: hashed
            manifest = _fresh(build_covidx_pp, run_dir / "covidx_pp" / "manifest.csv", *built.split_files,
                              present=built.images)(data, run_dir, detections, config, key=key)
            written = expected_outputs(run_dir / "covidx_pp").split_files  # a first build's too
            _fresh(build_covidx_pp, manifest, *written).remember(key)
        pp_train = _cleaned(data.train, data.root, manifest.parent).records()
        tests[f"{data.audit_split}_pp"] = _cleaned(audited, data.root, manifest.parent).records()
        b_path = run_dir / "models" / "b.safetensors"
        with stage("train B"):
            b = _fresh(train_classifier, b_path, b_path.with_suffix(".json"))(
                pp_train, b_path, config, key=content_key("train-b", sha256_of(manifest), config.train))
        pp_records = tests[f"{data.audit_split}_pp"]
        with stage("predict B", total=sum(len(records) for records in tests.values()) + len(pp_records)) as advance:
            for name, records in tests.items():
                _predict(b, records, run_dir / "predictions" / f"b_{name}.csv")
                advance(len(records))
            _predict(a, pp_records, run_dir / "predictions" / f"a_{data.audit_split}_pp.csv")
            advance(len(pp_records))
        with stage("iGOS++ of B", total=len(audit_records)) as advance:
            _explain(b, audit_records, run_dir, config, data.audit_split, advance)
        with stage("audit B", total=len(audit_records)):
            _fresh(audit, run_dir / "audit" / "b.csv", run_dir / "audit" / "b_quality.json")(
                b, audit_records, run_dir, detections, config, truth_root, data.audit_split,
                key=content_key("audit-b", checkpoint_digest(b), sha256_of(detections), config.audit, data.digest))

        with stage("compare"):
            _fresh(compare, run_dir / "compare" / "metrics.csv", run_dir / "compare" / "class_mcnemar.csv",
                   run_dir / "rejected" / "compare.csv")(
                run_dir, list(tests), config, key=content_key(
                    "compare", *(sha256_of(run_dir / "predictions" / f"{m}_{s}.csv") for m in "ab" for s in tests),
                    sha256_of(run_dir / "audit" / "a.csv"), config.compare))
        if config.compare.extra_train_seeds:
            with stage("other training seeds"):
                _seed_runs(run_dir, config, data, train_records, pp_train, tests)
        write_rejected(run_dir)
        inventory = changes_stage.inventory_table(
            {name: [(r.filename, image_hash(r.path)) for r in records] for name, records in source_records.items()})
        since = write_changes(run_dir, inventory)
        seconds = time.perf_counter() - started
        write_timings(run_dir / "timings.csv", stage_times(first_stage), seconds)
        summary = write_summary(run_dir, data, counts, list(tests), seconds, since_last_run=since,
                                task_runner=describe_task_runner(FlowRunContext.get().task_runner))
        changes_stage.write_snapshot(run_dir, inventory, run_dir / "audit" / "a.csv")
        _artifacts(run_dir, summary)
        if config.report:
            from reports import render

            with stage("report"):
                render(run_dir)
    return summary


def _seed_runs(run_dir: Path, config: AuditConfig, data: Data, train_records: list[Record], pp_train: list[Record],
               tests: dict[str, list[Record]]) -> None:
    """Both arms retrained with `compare.extra_train_seeds`; compare/seeds.csv: mean ± sd of every metric
    across all seeds (the main run's included), per split, arm and stratum."""
    seeds = config.compare.extra_train_seeds
    flagged = pd.read_csv(run_dir / "audit" / "a.csv", usecols=["filename", "flagged"], dtype={"filename": str})
    tables: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for m, records, digest in (("a", train_records, data.digest),
                               ("b", pp_train, sha256_of(run_dir / "covidx_pp" / "manifest.csv"))):
        for name in tests:
            tables[(m, name)] = [pd.read_csv(run_dir / "predictions" / f"{m}_{name}.csv", dtype={"filename": str})]
        for seed in seeds:
            settings = config.model_copy(update={"train": replace(config.train, seed=seed)})
            path = run_dir / "models" / "seeds" / f"{m}_seed{seed}.safetensors"
            checkpoint = _fresh(train_classifier, path, path.with_suffix(".json"))(
                records, path, settings, key=content_key(f"train-{m}", digest, settings.train))
            for name, split_records in tests.items():
                out = run_dir / "predictions" / "seeds" / f"{m}_seed{seed}_{name}.csv"
                tables[(m, name)].append(pd.read_csv(_predict(checkpoint, split_records, out), dtype={"filename": str}))
    labels = read_meta(run_dir / "models" / "a.safetensors").labels
    rows = [compare_stage.seed_summary([_with_flags(t, flagged) for t in group], labels=labels)
            .assign(split=name, model=m) for (m, name), group in tables.items()]
    summary = pd.concat(rows, ignore_index=True)
    columns = ["split", "model", "stratum_kind", "stratum", "metric", "mean", "sd", "n_seeds"]
    write_text(run_dir / "compare" / "seeds.csv", summary[columns].to_csv(index=False, lineterminator="\n"))


def detect_text(data: Data, config: AuditConfig, splits: Sequence[tuple[str, list[Record]]],
                advance: Callable[[int], None]) -> Path:
    """text/detections.csv for the given splits: chunks submitted through the task runner, then merged;
    `advance(n)` as each chunk of n images is done."""
    chunk_size = config.explain.chunk_size
    jobs = []
    for split, records in splits:
        for k in range(0, len(records), chunk_size):
            part = records[k : k + chunk_size]
            out = config.run_dir / "text" / "chunks" / f"{split}_{k // chunk_size:04d}.csv"
            key = content_key("detect", config.text, split, *(f"{r.filename}:{image_hash(r.path)}" for r in part))
            jobs.append((part, out, split, key))
    progress = create_progress_artifact(0.0, key="text-detection", description="Text detection: chunks done (%)")
    stages = [_fresh(detect_text_chunk, out) for _, out, _, _ in jobs]
    futures = [fresh.submit(part, out, config, split, key=key) for fresh, (part, out, split, key) in zip(
        stages, jobs, strict=True)]
    paths = []
    for done, (future, fresh, (part, _, _, key)) in enumerate(zip(futures, stages, jobs, strict=True), start=1):
        paths.append(future.result())
        fresh.remember(key)
        update_progress_artifact(progress, 100.0 * done / len(futures))
        advance(len(part))
    merged = pd.concat([pd.read_csv(path, dtype={"filename": str}) for path in paths], ignore_index=True)
    out = config.run_dir / "text" / "detections.csv"
    write_text(out, merged.to_csv(index=False, lineterminator="\n"))
    return out


def _explain(checkpoint: Path, records: list[Record], run_dir: Path, config: AuditConfig, split: str,
             advance: Callable[[int], None]) -> Path:
    """explain/<m>/ for one classifier: chunks submitted through the task runner, then the index written;
    `advance(n)` as each chunk of n images is done."""
    chunks = explain_stage.chunk_records(records, config.explain.chunk_size)
    digest = checkpoint_digest(checkpoint)
    progress = create_progress_artifact(0.0, key=f"explain-{checkpoint.stem}",
                                        description=f"iGOS++ of classifier {checkpoint.stem.upper()}: chunks done (%)")
    jobs = []
    for k, part in enumerate(chunks):
        key = content_key("explain", explain_stage.chunk_hash(digest, config.explain, part, split))
        fresh = _fresh(explain_chunk, explain_stage.chunk_path(run_dir / "explain" / checkpoint.stem, k))
        jobs.append((fresh, key, fresh.submit(checkpoint, part, run_dir, config, split, k, key=key)))
    for done, ((fresh, key, future), part) in enumerate(zip(jobs, chunks, strict=True), start=1):
        future.result()
        fresh.remember(key)
        update_progress_artifact(progress, 100.0 * done / len(jobs))
        advance(len(part))
    explain_stage.collect_index(run_dir / "explain" / checkpoint.stem, len(chunks))
    return run_dir / "explain" / checkpoint.stem


def _predict(checkpoint: Path, records: list[Record], out_csv: Path) -> Path:
    key = content_key("predict", checkpoint_digest(checkpoint),  # the table holds labels, patients and sources
                      *(f"{r.filename}:{r.label}:{r.patient_id}:{r.source}:{image_hash(r.path)}" for r in records))
    return _fresh(predict, out_csv)(checkpoint, records, out_csv, key=key)


def _cleaned(split: Split, root: Path, pp_root: Path) -> Split:
    """The COVIDx++ copy of a split: the same relative split file and image folder under `pp_root`."""
    return Split(split.name, pp_root / split.split_file.relative_to(root), pp_root / split.image_dir.relative_to(root),
                 split.duplicates)


def write_timings(path: Path, stages: Sequence[StageTime], seconds: float) -> Path:
    """timings.csv: `stage, images, seconds` of every stage of this run (reused stages take about 0 s), then
    "other" (the time between stages) and "total", the run's time in summary.json; the report is not in it."""
    rows = [(item.name, item.total, round(item.seconds, 2)) for item in stages]
    rows += [("other", None, round(seconds - sum(item.seconds for item in stages), 2)), ("total", None,
                                                                                         round(seconds, 1))]
    table = pd.DataFrame(rows, columns=["stage", "images", "seconds"]).astype({"images": "Int64"})
    return write_text(path, table.to_csv(index=False, lineterminator="\n"))


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


@functools.cache  # one short string per image: bounded by the dataset
def _hash_of(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def image_hash(path: Path) -> str:
    """sha256 of an image file, computed once per process while the file's size and mtime stay the same:
    the flow's cache keys name every image several times (data digest, detection and prediction keys).
    "missing" for a file that has gone or cannot be read: the stage that reads it records it as rejected,
    and a rerun redoes that work once the file is back."""
    try:
        status = Path(path).stat()
        return _hash_of(Path(path), status.st_size, status.st_mtime_ns)
    except OSError:
        return MISSING


@dataclass(frozen=True)
class _Fresh:
    """A stage task whose cached result is used only while the files it wrote are still the ones it wrote.

    After a task runs, the sha256 of its `outputs` is recorded under its key (`.prefect/outputs/<key>.json`,
    paths relative to the run folder); the next time the key comes up, the cached result is ignored and the
    task runs again when a file is missing or differs, e.g. overwritten by a run on other data in the same
    folder. `present` files (the COVIDx++ images) are only checked to exist: the manifest's hash covers them.
    """

    stage_task: Task
    outputs: tuple[Path, ...]
    present: tuple[Path, ...] = ()

    def __call__(self, *args: object, key: str, **kwargs: object) -> object:
        unchanged = self._unchanged(key)
        result = self.stage_task.with_options(refresh_cache=not unchanged)(*args, key=key, **kwargs)
        if not unchanged:
            self.remember(key)
        return result

    def submit(self, *args: object, key: str, **kwargs: object) -> object:
        """The task submitted to the task runner; call `remember(key)` once its future's result is in."""
        return self.stage_task.with_options(refresh_cache=not self._unchanged(key)).submit(*args, key=key, **kwargs)

    def remember(self, key: str) -> None:
        folder = _run_folder()
        digests = {path.relative_to(folder).as_posix(): sha256_of(path) for path in self.outputs}
        write_text(folder / ".prefect" / "outputs" / f"{key}.json", json.dumps(digests, indent=1) + "\n")

    def _unchanged(self, key: str) -> bool:
        folder = _run_folder()
        try:
            recorded = json.loads((folder / ".prefect" / "outputs" / f"{key}.json").read_text())
        except (OSError, ValueError):
            recorded = None
        return recorded is not None and all(path.is_file() for path in self.present) and all(
            recorded.get(path.relative_to(folder).as_posix()) == file_sha256(path) for path in self.outputs)


def _fresh(stage_task: Task, *outputs: Path, present: Sequence[Path] = ()) -> _Fresh:
    """`stage_task` reusing its cached result only while `outputs` are as it wrote them (`_Fresh`)."""
    return _Fresh(stage_task, outputs, tuple(present))


def _run_folder() -> Path:
    """The run folder of the flow run in progress (where `store_results_in` put its results)."""
    return Path(FlowRunContext.get().result_store.result_storage.run_folder)


def _generated_as_asked(root: Path, asked: SyntheticData) -> bool:
    """Whether `root` holds a complete synthetic dataset generated with exactly these settings."""
    try:
        made = json.loads((root / SYNTHETIC_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all(made.get(key) == value for key, value in asked.model_dump().items())


def data_root(config: AuditConfig) -> Path:
    """The dataset folder of a run: the COVIDx folder given, or the run's generated `data/`."""
    return (config.run_dir / "data" if config.data.root is None else config.data.root).resolve()


def generate_synthetic(config: AuditConfig) -> None:
    """Write the synthetic dataset into `<run_dir>/data` unless it is there, complete, as the config asks.
    Done before the data is keyed (`_data_state`), so that the first run and its reruns key the same files."""
    asked = config.data.synthetic
    if config.data.root is not None or _generated_as_asked(data_root(config), asked):
        return
    generate(data_root(config), n_train=asked.n_train, n_test=asked.n_test, image_size=asked.image_size,
             seed=asked.seed, shortcut=asked.shortcut, repeat_fraction=asked.repeat_fraction, overwrite=True)


def _data_state(config: AuditConfig) -> object:
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


def _with_flags(predictions: pd.DataFrame, flagged: pd.DataFrame) -> pd.DataFrame:
    """Predictions with A's audit flag (False where the image was not audited)."""
    out = predictions.merge(flagged, on="filename", how="left")
    out["flagged"] = out["flagged"].fillna(False).astype(bool)
    return out


def _write_rejects(path: Path, stage_name: str, split: str, rejected: Sequence) -> None:
    """A stage's rejects (objects with filename and reason) as `stage, split, filename, reason` rows."""
    rows = [{"stage": stage_name, "split": split, "filename": item.filename, "reason": item.reason}
            for item in rejected]
    write_text(path, pd.DataFrame(rows, columns=REJECTED_COLUMNS).to_csv(index=False, lineterminator="\n"))


def write_rejected(run_dir: Path) -> Path:
    """rejected.csv: every image a per-image stage skipped, gathered from the stages' own tables."""
    frames = [pd.read_csv(path, dtype=str, keep_default_na=False) for path in
              [*sorted(run_dir.glob("rejected/*.csv")), *sorted(run_dir.glob("explain/*/rejected.csv")),
               *sorted(run_dir.glob("audit/*_rejected.csv"))]]
    detections = pd.read_csv(run_dir / "text" / "detections.csv", dtype=str, keep_default_na=False)
    frames.append(detections[detections.status == "rejected"].assign(stage="detect-text")[list(REJECTED_COLUMNS)])
    cleaned = pd.read_csv(run_dir / "covidx_pp" / "rejected.csv", dtype=str, keep_default_na=False)
    frames.append(pd.DataFrame({"stage": "build-covidx-pp", "split": cleaned.split_files, "filename": cleaned.source,
                                "reason": cleaned.reason}))
    table = pd.concat([frame[list(REJECTED_COLUMNS)] for frame in frames], ignore_index=True)
    return write_text(run_dir / "rejected.csv", table.to_csv(index=False, lineterminator="\n"))


# ---- summary and artifacts --------------------------------------------------------------------------


def write_changes(run_dir: Path, inventory: pd.DataFrame) -> dict | None:
    """changes.json: what changed since the last completed run into this folder (`pipeline.changes`), or None
    (and no changes.json) when there was none."""
    previous = changes_stage.read_snapshot(run_dir)
    if previous is None:
        (run_dir / "changes.json").unlink(missing_ok=True)
        return None
    audit = pd.read_csv(run_dir / "audit" / "a.csv", dtype={"filename": str, "source": str, "label": str})
    since = _without_nan(changes_stage.since_last_run(previous, inventory, audit))
    write_text(run_dir / "changes.json", json.dumps(since, indent=1, allow_nan=False) + "\n")
    return since


def write_summary(run_dir: Path, data: Data, counts: dict[str, int], splits: Sequence[str], seconds: float, *,
                  task_runner: str, since_last_run: dict | None = None) -> dict:
    """summary.json: the headline numbers of docs/run-directory.md, read from the run's tables. `counts`: the
    images each split file listed when the run read them; `task_runner`: where the per-image work ran
    (`describe_task_runner`); `since_last_run`: changes.json's content (its counts go into the summary)."""
    covid = train_stage.positive_label(read_meta(run_dir / "models" / "a.safetensors").labels)
    summary: dict = {"run_id": run_dir.name, "seconds": round(seconds, 1), "task_runner": task_runner,
                     "synthetic": data.synthetic,
                     "versions": {package: version(package) for package in VERSIONED},
                     "dataset": counts}
    metrics = pd.read_csv(run_dir / "compare" / "metrics.csv")
    for m in ("a", "b"):
        numbers: dict[str, dict[str, float]] = {"covid_recall": {}, "accuracy": {}, "macro_f1": {}}
        for split in splits:
            table = pd.read_csv(run_dir / "predictions" / f"{m}_{split}.csv")
            positives = table[table.label == covid]
            numbers["covid_recall"][split] = round(float((positives.predicted == covid).mean()), 4)
            numbers["accuracy"][split] = round(float(table.correct.mean()), 4)
        overall = metrics[(metrics.stratum_kind == "all") & (metrics.model == m) & (metrics.metric == "macro_f1")]
        numbers["macro_f1"] = {row.split: round(float(row.value), 4) for row in overall.itertuples()}
        summary[m] = numbers
    mcnemar = pd.read_csv(run_dir / "compare" / "mcnemar.csv")
    overall = mcnemar[mcnemar.stratum_kind == "all"]
    summary["mcnemar_p"] = {row.split: float(row.p_value) for row in overall.itertuples()}
    by_class = pd.read_csv(run_dir / "compare" / "class_mcnemar.csv")
    covid_rows = by_class[(by_class.stratum_kind == "all") & (by_class.label == covid)]
    summary["covid_mcnemar_p"] = {row.split: float(row.p_value) for row in covid_rows.itertuples()}
    difference = metrics[(metrics.stratum_kind == "all") & (metrics.model == "b-a")
                         & (metrics.metric == f"recall_{covid}")]
    summary["covid_recall_difference"] = {row.split: {"value": round(float(row.value), 4), "ci_low": round(
        float(row.ci_low), 4), "ci_high": round(float(row.ci_high), 4)} for row in difference.itertuples()}
    quality = json.loads((run_dir / "audit" / "a_quality.json").read_text())
    summary.update({key: quality.get(key) for key in QUALITY_KEYS})
    for m in ("a", "b"):
        summary[f"text_share_{m}"] = round(float(pd.read_csv(run_dir / "audit" / f"{m}.csv").text_share.mean()), 4)
    manifest = pd.read_csv(run_dir / "covidx_pp" / "manifest.csv")
    summary["covidx_pp"] = {status: int((manifest.status == status).sum()) for status in
                            ("cleaned", "unchanged", "rejected")}
    summary["since_last_run"] = None if since_last_run is None else {
        "previous_finished_at": since_last_run["previous_finished_at"],
        **{kind: since_last_run["images"][kind] for kind in ("added", "removed", "changed", "unreadable")},
        "new_flags": since_last_run["flags"]["new"], "flags_gone": since_last_run["flags"]["gone"]}
    summary = _without_nan(summary)
    write_text(run_dir / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary


def percent(value: float | None) -> str:
    """A summary.json fraction as a percentage; "n/a" for null (e.g. a class absent from the split)."""
    return "n/a" if value is None else f"{value:.1%}"


def _without_nan(value: object) -> object:
    """`value` with every NaN or infinite float (a metric of a class absent from a split) replaced by None,
    which JSON writes as null: NaN is not JSON, and most readers refuse it."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _artifacts(run_dir: Path, summary: dict) -> None:
    """Prefect artifacts: the headline numbers (markdown), the metrics table and a link to the report."""
    a, b = summary["a"]["covid_recall"], summary["b"]["covid_recall"]
    lines = ["# Dataset audit: headline", "", "| | A | B |", "|---|---|---|"]
    lines += [f"| COVID-19 recall, {split} | {percent(a[split])} | {percent(b[split])} |" for split in a]
    lines += ["", f"Text share of iGOS++ saliency: A {percent(summary['text_share_a'])}, "
              f"B {percent(summary['text_share_b'])}."]
    create_markdown_artifact("\n".join(lines), key="audit-headline", description="COVIDx -> COVIDx++ headline")
    metrics = pd.read_csv(run_dir / "compare" / "metrics.csv")
    rows = metrics[metrics.stratum_kind == "all"].round(4).to_dict(orient="records")
    create_table_artifact(rows, key="audit-metrics", description="A vs B, all test images, with 95% intervals")
    create_link_artifact((run_dir / "report.html").resolve().as_uri(), key="audit-report", link_text="report.html")


def run_audit(config: AuditConfig) -> dict:
    """Run `audit_flow` on the task runner the config asks for."""
    return audit_flow.with_options(task_runner=make_task_runner(config))(config)


def describe_task_runner(runner: object) -> str:
    """The task runner a flow run actually ran on, in words: its class, and for Dask the cluster."""
    name = type(runner).__name__
    if name != "DaskTaskRunner":
        return name
    if runner.address is not None:
        return f"{name} (scheduler {runner.address})"
    return f"{name} (local cluster, {runner.cluster_kwargs.get('n_workers', 'default')} workers)"


def make_task_runner(config: AuditConfig) -> object:
    """Local threads (one worker: torch uses the cores), a local Dask cluster, or an existing one."""
    runner = config.runner
    if runner.dask_address is None and runner.dask_workers is None:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if runner.dask_address is not None:
        return DaskTaskRunner(address=runner.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": runner.dask_workers, "threads_per_worker":
                                          runner.threads_per_worker, "processes": True, "dashboard_address": None})

