"""A flaky disk under the per-image tasks: an I/O error (EIO) on one image is retried by Prefect, and when it
persists past the retries the image is recorded as rejected while the flow completes.

The fault is injected where the stages read an image (`read_image` in the stage's module): the failing read
raises the OSError a dying disk or a stale network mount raises; everything else (Prefect's retries, CRAFT,
the classifier, iGOS++) is real.
"""

import errno
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import flow

import pipeline.explain
import pipeline.inputs
import pipeline.text.table
from datasets.errors import FileWriteError, ImageReadError
from datasets.rejects import Rejected
from datasets.synthetic import generate, split_records
from flows import tasks as stages
from flows.results import run_result_storage
from flows.tasks import RETRIES
from pipeline.checkpoint import CheckpointMeta, save_checkpoint
from pipeline.explain import explain_dir_of
from pipeline.models import build_classifier
from tests.flows.conftest import tiny_config

pytestmark = pytest.mark.slow  # Prefect task runs with retry delays
LABELS = ("normal", "pneumonia", "COVID-19")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A tiny synthetic COVIDx folder (`data/`) and an untrained small-CNN checkpoint for its classes (`models/`)."""
    import torch

    root = tmp_path_factory.mktemp("flaky")
    generate(root / "data", n_train=3, n_test=3, image_size=64, seed=0)
    torch.manual_seed(0)
    save_checkpoint(build_classifier("small_cnn", 3), CheckpointMeta("small_cnn", LABELS, 48),
                    root / "models" / "a.safetensors")
    return root


class FlakyDisk:
    """`read_image` that raises EIO for `victim` on its first `failures` reads, then reads the file."""

    def __init__(self, read, victim: str, failures: int) -> None:
        self.read, self.victim, self.failures, self.failed = read, victim, failures, 0

    def __call__(self, path, **options):
        if Path(path).name == self.victim and self.failed < self.failures:
            self.failed += 1
            raise OSError(errno.EIO, "Input/output error", str(path))
        return self.read(path, **options)


def test_rejects_tell_transient_io_errors_from_bad_input():
    eio = Rejected.of("a.png", OSError(errno.EIO, "Input/output error", "a.png"))
    assert eio.transient and eio.reason == "OSError: [Errno 5] Input/output error: 'a.png'"
    assert Rejected.of("a.png", TimeoutError("read timed out")).transient
    assert not Rejected.of("a.png", FileNotFoundError(errno.ENOENT, "No such file", "a.png")).transient
    assert not Rejected.of("a.png", ImageReadError("a.png", "truncated or corrupt PNG")).transient
    assert not Rejected.of("a.png", FileWriteError(errno.ENOSPC, "No space left on device", "out.png")).transient
    assert not Rejected("a.png", "label 'x' is not a class of the checkpoint").transient


def run_stage(stage: str, run_dir: Path, source: Path, records: list) -> Path:
    """Run one per-image task, as the audit flow does, inside a flow; return the file it writes."""
    config = tiny_config(run_dir)
    checkpoint = source / "models" / "a.safetensors"

    @flow(name=f"flaky-{stage}", result_storage=run_result_storage(run_dir), persist_result=False)  # as build_flow
    def probe() -> None:  # a new run folder, an empty store: Prefect runs the task
        if stage == "detect-text":
            stages.detect_text_chunk(records, run_dir / "detections.csv", config, "test")
        elif stage == "predict":
            stages.predict(checkpoint, records, run_dir / "predictions" / "a_test.csv")
        else:
            stages.explain_chunk(checkpoint, records, run_dir, config, "test", 0)

    probe()
    return {"detect-text": run_dir / "detections.csv", "predict": run_dir / "predictions" / "a_test.csv",
            "explain": explain_dir_of(run_dir, checkpoint) / "chunk_0.npz"}[stage]


def rejected_filenames(stage: str, output: Path, run_dir: Path) -> list[str]:
    """The images the stage recorded as rejected, from its own files."""
    if stage == "detect-text":
        table = pd.read_csv(output, dtype=str)
        return table[table.status == "rejected"].filename.tolist()
    if stage == "predict":
        return pd.read_csv(run_dir / "rejected" / "predict_a_test.csv", dtype=str).filename.tolist()
    with np.load(output) as stored:
        return stored["rejected_filenames"].tolist()


@pytest.mark.parametrize("stage", ["detect-text", "predict", "explain"])
@pytest.mark.parametrize("failures", [1, RETRIES + 1])
def test_a_flaky_read_is_retried_then_recorded(prefect_server, source, tmp_path, monkeypatch, stage, failures):
    records = split_records(source / "data", "test")[:3]
    victim = records[1].filename
    module = {"detect-text": pipeline.text.table, "predict": pipeline.inputs, "explain": pipeline.explain}[stage]
    disk = FlakyDisk(module.read_image, victim, failures)
    monkeypatch.setattr(module, "read_image", disk)

    output = run_stage(stage, tmp_path, source, records)

    assert disk.failed == failures  # each attempt of the task read the image once more
    if failures <= RETRIES:  # cured by a retry: nothing recorded
        assert rejected_filenames(stage, output, tmp_path) == []
    else:  # still failing on the last attempt: recorded with the reason, the other images done
        assert rejected_filenames(stage, output, tmp_path) == [victim]
