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
      probes                (probes.enabled) did cleaning remove the shortcut? (flows/probes_stage.py)
      summary.json, report.html

The flow holds no algorithm: every task (flows/tasks.py) calls one `pipeline` function that writes its files
into the run folder (docs/run-directory.md); flows/summary.py writes what the run says about itself. Every entry
point (the CLI, `cxr-audit serve`, prefect.yaml's deployments) runs the flow that `build_flow(config)` configures:
its task runner, and its tasks' result storage in `<run_dir>/.prefect`. Tasks are keyed on content (their
`ContentKey` cache policy: dataset digest or image hashes, checkpoint digests, stage configs), so a rerun, or a run
resumed after a kill, reuses what is done; the chunked stages (text detection, explanation) also skip their finished
chunk files themselves. A task whose recorded outputs have gone missing or changed runs again.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pandas as pd
from prefect import Flow, flow
from prefect.artifacts import (
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from datasets.atomic import file_sha256, remove_stale_temporaries, write_text
from datasets.covidx import Record
from datasets.synthetic import MANIFEST as SYNTHETIC_MANIFEST
from datasets.synthetic import generate
from flows.config import RunConfig, SyntheticData
from flows.probes_stage import probe_outputs, run_probes
from flows.progress import stage, stage_times
from flows.results import current_run_folder, run_result_storage
from flows.rundir import RunLock
from flows.settings import one_api_server
from flows.summary import publish_artifacts, write_changes, write_rejected, write_summary, write_timings
from flows.tasks import (
    Data,
    Split,
    build_covidx_pp,
    compare,
    data_root,
    detect_text_chunk,
    explain_chunk,
    fresh_task,
    predict,
    prepare_data,
    train_classifier,
    with_flags,
)
from flows.tasks import audit as audit_task
from pipeline import changes as changes_stage
from pipeline import compare as compare_stage
from pipeline import explain as explain_stage
from pipeline.checkpoint import read_meta
from pipeline.clean import expected_outputs

LOG = logging.getLogger(__name__)


@flow
def audit_flow(config: RunConfig) -> dict:
    """Run the whole audit into `config.run_dir`; returns the headline numbers (summary.json). Run as
    `build_flow(config)`, which stores the task results in this run folder."""
    started = time.perf_counter()
    # Absolute from here on: the persisted task results hold paths, and a rerun may start in another directory.
    config = config.model_copy(update={"run_dir": config.run_dir.resolve()})
    run_dir = config.run_dir
    if current_run_folder() != run_dir:
        raise ValueError(f"{run_dir}: the flow stores its results in {current_run_folder()}: run build_flow(config)")
    with RunLock(run_dir):
        for stale in remove_stale_temporaries(run_dir, skip=(".prefect",)):  # a killed run's half-written files
            LOG.info("removed %s, left by an interrupted write", stale)
        write_text(run_dir / "config.yaml", config.to_yaml())
        first_stage = len(stage_times())
        with stage("prepare data"):
            generate_synthetic(config)
            data = fresh_task(prepare_data, run_dir / "data_quality.json")(config)
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
            a = fresh_task(train_classifier, a_path, a_path.with_suffix(".json"))(train_records, a_path, config)
        with stage("predict A", total=sum(counts.values()) - len(train_records)) as advance:
            for name, records in tests.items():
                _predict(a, records, run_dir / "predictions" / f"a_{name}.csv")
                advance(len(records))
        with stage("iGOS++ of A", total=len(audit_records)) as advance:
            _explain(a, audit_records, run_dir, config, data.audit_split, advance)
        truth_root = data.root if data.synthetic else None
        with stage("audit A", total=len(audit_records)):
            fresh_task(audit_task, run_dir / "audit" / "a.csv", run_dir / "audit" / "a_quality.json")(
                a, audit_records, run_dir, detections, config, truth_root, data.audit_split)

        with stage("COVIDx++", total=len(train_records) + len(audit_records)):
            built = expected_outputs(run_dir / "covidx_pp")  # the split files hold patients and labels: hashed
            build = fresh_task(build_covidx_pp, run_dir / "covidx_pp" / "manifest.csv", *built.split_files,
                               present=built.images)
            manifest = build(data, run_dir, detections, config)
            written = expected_outputs(run_dir / "covidx_pp").split_files  # a first build's too
            fresh_task(build_covidx_pp, manifest, *written).remember(build.key(data, run_dir, detections, config))
        pp_train = _cleaned(data.train, data.root, manifest.parent).records()
        tests[f"{data.audit_split}_pp"] = _cleaned(audited, data.root, manifest.parent).records()
        b_path = run_dir / "models" / "b.safetensors"
        with stage("train B"):
            b = fresh_task(train_classifier, b_path, b_path.with_suffix(".json"))(pp_train, b_path, config)
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
            fresh_task(audit_task, run_dir / "audit" / "b.csv", run_dir / "audit" / "b_quality.json")(
                b, audit_records, run_dir, detections, config, truth_root, data.audit_split)

        with stage("compare"):
            fresh_task(compare, run_dir / "compare" / "metrics.csv", run_dir / "compare" / "class_mcnemar.csv",
                       run_dir / "rejected" / "compare.csv")(run_dir, list(tests), config)
        if config.compare.extra_train_seeds:
            with stage("other training seeds"):
                _seed_runs(run_dir, config, train_records, pp_train, tests)
        if config.probes.enabled:
            with stage("probes"):
                fresh_task(run_probes, *probe_outputs(run_dir))(data, run_dir, detections, manifest, config)
        elif (run_dir / "probes").exists():  # an earlier run's, on other settings: not this run's findings
            shutil.rmtree(run_dir / "probes")
            LOG.info("removed probes/, left by an earlier run with probes enabled")
        write_rejected(run_dir)
        inventory = changes_stage.inventory_table(
            {name: [(r.filename, file_sha256(r.path)) for r in records] for name, records in source_records.items()})
        since = write_changes(run_dir, inventory)
        seconds = time.perf_counter() - started
        write_timings(run_dir / "timings.csv", stage_times(first_stage), seconds)
        summary = write_summary(run_dir, data, counts, list(tests), seconds, since_last_run=since,
                                task_runner=describe_task_runner(FlowRunContext.get().task_runner),
                                probes=config.probes.enabled)
        changes_stage.write_snapshot(run_dir, inventory, run_dir / "audit" / "a.csv")
        publish_artifacts(run_dir, summary)
        if config.report:
            from reports import render

            with stage("report"):
                render(run_dir)
    return summary


def _seed_runs(run_dir: Path, config: RunConfig, train_records: list[Record], pp_train: list[Record],
               tests: dict[str, list[Record]]) -> None:
    """Both arms retrained with `compare.extra_train_seeds`; compare/seeds.csv: mean ± sd of every metric
    across all seeds (the main run's included), per split, arm and stratum."""
    seeds = config.compare.extra_train_seeds
    flagged = pd.read_csv(run_dir / "audit" / "a.csv", usecols=["filename", "flagged"], dtype={"filename": str})
    tables: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for m, records in (("a", train_records), ("b", pp_train)):
        for name in tests:
            tables[(m, name)] = [pd.read_csv(run_dir / "predictions" / f"{m}_{name}.csv", dtype={"filename": str})]
        for seed in seeds:
            settings = config.model_copy(update={"train": replace(config.train, seed=seed)})
            path = run_dir / "models" / "seeds" / f"{m}_seed{seed}.safetensors"
            checkpoint = fresh_task(train_classifier, path, path.with_suffix(".json"))(records, path, settings)
            for name, split_records in tests.items():
                out = run_dir / "predictions" / "seeds" / f"{m}_seed{seed}_{name}.csv"
                tables[(m, name)].append(pd.read_csv(_predict(checkpoint, split_records, out), dtype={"filename": str}))
    labels = read_meta(run_dir / "models" / "a.safetensors").labels
    rows = [compare_stage.seed_summary([with_flags(t, flagged) for t in group], labels=labels)
            .assign(split=name, model=m) for (m, name), group in tables.items()]
    summary = pd.concat(rows, ignore_index=True)
    columns = ["split", "model", "stratum_kind", "stratum", "metric", "mean", "sd", "n_seeds"]
    write_text(run_dir / "compare" / "seeds.csv", summary[columns].to_csv(index=False, lineterminator="\n"))


def detect_text(data: Data, config: RunConfig, splits: Sequence[tuple[str, list[Record]]],
                advance: Callable[[int], None]) -> Path:
    """text/detections.csv for the given splits: chunks submitted through the task runner, then merged;
    `advance(n)` as each chunk of n images is done."""
    chunk_size = config.explain.chunk_size
    jobs = []
    for split, records in splits:
        for k in range(0, len(records), chunk_size):
            part = records[k : k + chunk_size]
            out = config.run_dir / "text" / "chunks" / f"{split}_{k // chunk_size:04d}.csv"
            jobs.append((part, fresh_task(detect_text_chunk, out).submit(part, out, config, split)))
    progress = create_progress_artifact(0.0, key="text-detection", description="Text detection: chunks done (%)")
    paths = []
    for done, (part, submitted) in enumerate(jobs, start=1):
        paths.append(submitted.result())
        update_progress_artifact(progress, 100.0 * done / len(jobs))
        advance(len(part))
    merged = pd.concat([pd.read_csv(path, dtype={"filename": str}) for path in paths], ignore_index=True)
    out = config.run_dir / "text" / "detections.csv"
    write_text(out, merged.to_csv(index=False, lineterminator="\n"))
    return out


def _explain(checkpoint: Path, records: list[Record], run_dir: Path, config: RunConfig, split: str,
             advance: Callable[[int], None]) -> Path:
    """explain/<m>/ for one classifier: chunks submitted through the task runner, then the index written;
    `advance(n)` as each chunk of n images is done."""
    chunks = explain_stage.chunk_records(records, config.explain.chunk_size)
    progress = create_progress_artifact(0.0, key=f"explain-{checkpoint.stem}",
                                        description=f"iGOS++ of classifier {checkpoint.stem.upper()}: chunks done (%)")
    jobs = [fresh_task(explain_chunk, explain_stage.chunk_path(run_dir / "explain" / checkpoint.stem, k)).submit(
        checkpoint, part, run_dir, config, split, k) for k, part in enumerate(chunks)]
    for done, (submitted, part) in enumerate(zip(jobs, chunks, strict=True), start=1):
        submitted.result()
        update_progress_artifact(progress, 100.0 * done / len(jobs))
        advance(len(part))
    explain_stage.collect_index(run_dir / "explain" / checkpoint.stem, len(chunks))
    return run_dir / "explain" / checkpoint.stem


def _predict(checkpoint: Path, records: list[Record], out_csv: Path) -> Path:
    return fresh_task(predict, out_csv)(checkpoint, records, out_csv)


def _cleaned(split: Split, root: Path, pp_root: Path) -> Split:
    """The COVIDx++ copy of a split: the same relative split file and image folder under `pp_root`."""
    return Split(split.name, pp_root / split.split_file.relative_to(root), pp_root / split.image_dir.relative_to(root),
                 split.duplicates)


def _generated_as_asked(root: Path, asked: SyntheticData) -> bool:
    """Whether `root` holds a complete synthetic dataset generated with exactly these settings."""
    try:
        made = json.loads((root / SYNTHETIC_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all(made.get(key) == value for key, value in asked.model_dump().items())


def generate_synthetic(config: RunConfig) -> None:
    """Write the synthetic dataset into `<run_dir>/data` unless it is there, complete, as the config asks.
    Done before the data is keyed (`flows.tasks.data_state`), so that the first run and its reruns key the same
    files."""
    asked = config.data.synthetic
    if config.data.root is not None or _generated_as_asked(data_root(config), asked):
        return
    generate(data_root(config), n_train=asked.n_train, n_test=asked.n_test, image_size=asked.image_size,
             seed=asked.seed, shortcut=asked.shortcut, repeat_fraction=asked.repeat_fraction, overwrite=True)


def build_flow(config: RunConfig) -> Flow:
    """The audit flow as `config` asks for it, what every entry point runs: named "dataset-audit", on the task
    runner of its `runner` section (`make_task_runner`), its tasks' results stored in the run folder
    (`flows.results.run_result_storage`; the flow's own result, the summary, is not stored)."""
    return audit_flow.with_options(name="dataset-audit", task_runner=make_task_runner(config),
                                   result_storage=run_result_storage(config.run_dir), persist_result=False)


def run_audit(config: RunConfig) -> dict:
    """Run the audit into `config.run_dir` (`build_flow`); returns the headline numbers (summary.json). On a
    local Dask cluster the workers report to this process's Prefect API server (`flows.settings.one_api_server`);
    an existing cluster's workers need a PREFECT_API_URL they can reach (a temporary server listens on
    127.0.0.1 only)."""
    with one_api_server() if config.runner.dask_workers is not None else nullcontext():
        return build_flow(config)(config)


def describe_task_runner(runner: object) -> str:
    """The task runner a flow run actually ran on, in words: its class, and for Dask the cluster."""
    name = type(runner).__name__
    if name != "DaskTaskRunner":
        return name
    if runner.address is not None:
        return f"{name} (scheduler {runner.address})"
    return f"{name} (local cluster, {runner.cluster_kwargs.get('n_workers', 'default')} workers)"


def make_task_runner(config: RunConfig) -> object:
    """Local threads (one worker: torch uses the cores), a local Dask cluster, or an existing one."""
    runner = config.runner
    if runner.dask_address is None and runner.dask_workers is None:
        return ThreadPoolTaskRunner(max_workers=1)
    import dask
    from prefect_dask import DaskTaskRunner

    if runner.dask_address is not None:
        return DaskTaskRunner(address=runner.dask_address)
    # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_ set, which turns off glibc's adaptive mmap
    # threshold: each large tensor is then mapped and unmapped anew, and iGOS++ in a one-thread worker took 2.7x
    # the time of one thread in this process (docs/measurements.md §6). The local cluster's workers start without it.
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    return DaskTaskRunner(cluster_kwargs={"n_workers": runner.dask_workers, "threads_per_worker":
                                          runner.threads_per_worker, "processes": True, "dashboard_address": None})
