"""The run folder of one audit: its lock and the content keys that let a rerun skip finished stages.

A run folder is held by one process at a time: `RunLock` takes an exclusive `flock` on `run.lock`,
which the operating system releases when the process ends, even by SIGKILL, so a killed run never
leaves a stale lock behind. A second run on the same folder gets `RunInUseError` at once.

`content_key(...)` hashes what decides a stage's outputs (configs, file hashes, checkpoint digests);
`ContentKey`, the Prefect cache policy of each stage task (flows/tasks.py), derives it from the task's
inputs, so a rerun with the same inputs reuses the stage's persisted result instead of recomputing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

LOCK_FILE = "run.lock"


class RunInUseError(RuntimeError):
    """Another process holds the run folder."""


class RunLock:
    """Exclusive hold on a run folder for the duration of a `with` block."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._handle: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            os.close(handle)
            raise RunInUseError(f"{self.path.parent}: run folder in use by another cxr-audit process "
                                f"(lock {self.path}); wait for it or choose another --out") from error
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        self._handle = handle
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None


def _plain(value: Any) -> Any:
    """JSON-ready form of configs (dataclasses, pydantic models), paths and containers."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def content_key(stage: str, *parts: Any) -> str:
    """A stable sha256 of a stage name and everything that decides its outputs."""
    payload = json.dumps([stage, *(_plain(part) for part in parts)], sort_keys=True, default=str)
    return f"{stage}-{hashlib.sha256(payload.encode()).hexdigest()[:32]}"



@dataclass(kw_only=True)
class ContentKey(CachePolicy):
    """Prefect cache policy of a stage task: its content key, `derive(inputs)` (a `content_key` of the data,
    checkpoint digests and stage config the inputs name), never a hash of the inputs' Python objects (paths
    into the run folder, which may move) or of the task's source."""

    derive: Callable[[dict[str, Any]], str]

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str:
        return self.derive(inputs)
