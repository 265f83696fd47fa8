"""The run-folder lock and the content keys of the flow's stages."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect import flow
from typer.testing import CliRunner

from flows.audit import generate_synthetic
from flows.cli import app
from flows.config import RunConfig
from flows.results import run_result_storage
from flows.rundir import LOCK_FILE, RunInUseError, RunLock, content_key
from flows.tasks import fresh_task, prepare_data
from tests.flows.conftest import tiny_config

HOLD = ("import sys, time; from flows.rundir import RunLock\n"
        "with RunLock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")


def hold_in_child(run_dir: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[2])
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    child = hold_in_child(tmp_path)
    try:
        with pytest.raises(RunInUseError, match="in use by another cxr-audit process"), RunLock(tmp_path):
            pass
    finally:
        child.kill()
        child.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    child = hold_in_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):  # the kernel released the flock with the process
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_the_lock_is_released_after_the_block(tmp_path):
    with RunLock(tmp_path):
        pass
    started = time.perf_counter()
    with RunLock(tmp_path):
        pass
    assert time.perf_counter() - started < 1


@dataclass(frozen=True)
class Settings:
    steps: int
    name: str = "x"


def test_content_keys_change_with_every_input_and_only_then():
    base = content_key("train", Settings(3), Path("a/b"), ["h1", "h2"])
    assert base == content_key("train", Settings(3), Path("a/b"), ["h1", "h2"])
    assert base.startswith("train-")
    others = {content_key("train", Settings(4), Path("a/b"), ["h1", "h2"]),
              content_key("train", Settings(3, "y"), Path("a/b"), ["h1", "h2"]),
              content_key("train", Settings(3), Path("a/c"), ["h1", "h2"]),
              content_key("train", Settings(3), Path("a/b"), ["h2", "h1"]),
              content_key("predict", Settings(3), Path("a/b"), ["h1", "h2"])}
    assert base not in others and len(others) == 5


def test_a_second_audit_on_a_held_folder_exits_3_and_changes_nothing(prefect_server, tmp_path):
    """The real CLI against a folder another process holds: exit code 3 at once, every file as it was."""
    run_dir = tmp_path / "run"
    (run_dir / "models").mkdir(parents=True)
    (run_dir / "summary.json").write_text('{"from": "the first run"}\n')
    (run_dir / "models" / "a.safetensors").write_bytes(b"weights of the first run")

    def files() -> dict[str, str]:
        return {str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in sorted(run_dir.rglob("*")) if path.is_file()}

    config = tmp_path / "tiny.yaml"
    config.write_text("data: {synthetic: {n_train: 36, n_test: 12, image_size: 96}}\n")
    child = hold_in_child(run_dir)
    try:
        before = files()
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["demo", "--out", str(run_dir), "--config", str(config)])
        assert result.exit_code == 3, result.output
        assert "in use by another cxr-audit process" in result.output
        assert time.perf_counter() - started < 60  # refused before any work, not after it
        assert files() == before
    finally:
        child.kill()
        child.wait()


def test_two_run_folders_with_the_same_inputs_keep_their_own_results(prefect_server, tmp_path):
    """The stages' cache keys are content keys; each run folder has its own result store, so a second folder
    with the same data (a copy, mtimes kept: the same data key) computes its own instead of getting the first
    folder's paths."""
    generate_synthetic(tiny_config(tmp_path / "first"))
    shutil.copytree(tmp_path / "first" / "data", tmp_path / "second" / "data")
    roots, keys = [], []
    for name in ("first", "second"):
        config = tiny_config((tmp_path / name).resolve())
        keys.append(fresh_task(prepare_data).key(config))

        @flow(name=f"store-{name}", result_storage=run_result_storage(config.run_dir), persist_result=False)
        def probe(config: RunConfig = config) -> Path:
            return prepare_data(config).root

        roots.append(probe())
        assert (config.run_dir / ".prefect" / "results" / keys[-1]).is_file()
    assert keys[0] == keys[1] and keys[0].startswith("data-")
    assert roots == [tmp_path / "first" / "data", tmp_path / "second" / "data"]
