"""The run folder's store of Prefect task results (the records a rerun or a resumed run reuses): data only.

Prefect decodes a stored result with the serializer that the file itself names, and falls back to the
task's serializer for a file that is not a record, so a results folder holding pickles would run whatever
a tampered file contains on the next rerun. Here every task result is written as JSON (the tasks return
paths and the `Data` description of the dataset), and `RunResultStorage` checks each record before
Prefect sees it: a JSON record, written by Prefect's JSON serializer with its own encoder and decoder,
whose result names only the classes in `RESULT_CLASSES`. Anything else (a pickle, another serializer or
decoder, a class from elsewhere, a truncated file) raises `ResultRecordError` naming the file, logged as
a warning; Prefect then takes the record as missing and the task runs again, writing a sound record in its
place. Nothing in the refused file is executed.

A path inside the run folder is stored relative to it (`RUN_MARK` + "/models/a.safetensors") and read
back inside the folder the rerun runs in, so a run folder that was moved or copied elsewhere reuses its
own results and never reads or writes the old folder; paths outside it (a COVIDx folder) stay absolute.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from prefect.filesystems import LocalFileSystem
from prefect.serializers import JSONSerializer

LOG = logging.getLogger(__name__)
# The result classes a task of the audit flow returns (`flows.tasks`): run files and the dataset.
RESULT_CLASSES = frozenset({"pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.Path", "flows.tasks.Data"})
RESULT_SERIALIZER = "json"
RUN_MARK = "<run>"  # a stored path starting with this lies inside the run folder
_EXPECTED_SERIALIZER = JSONSerializer().model_dump(mode="json")


class ResultRecordError(RuntimeError):
    """A stored task result that this project did not write: refused before anything in it is decoded."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}; this result was not written by cxr-audit, or was changed since. "
                         f"Delete it (or the run's .prefect folder) and rerun: the work is redone")
        self.path = path


def check_result_record(path: Path, content: bytes) -> None:
    """Raise ResultRecordError unless `content` (a stored task result from `path`) is a JSON record with
    Prefect's JSON serializer and a result naming only `RESULT_CLASSES`."""
    try:
        record = json.loads(content)
    except ValueError:
        raise ResultRecordError(path, "not a JSON result record") from None
    if not isinstance(record, dict) or not isinstance(record.get("metadata"), dict):
        raise ResultRecordError(path, "not a result record (no metadata)")
    if record["metadata"].get("serializer") != _EXPECTED_SERIALIZER:
        raise ResultRecordError(path, "names a serializer other than Prefect's plain JSON one")
    try:
        result = json.loads(record.get("result"))
    except (TypeError, ValueError):
        raise ResultRecordError(path, "its result is not JSON") from None
    unknown = sorted({name for name in _class_names(result) if name not in RESULT_CLASSES})
    if unknown:
        raise ResultRecordError(path, f"its result names classes outside the flow's results: {unknown[:3]}")


def _class_names(value: Any) -> Iterator[str]:
    """Every "__class__" value in a decoded JSON document (what Prefect's JSON decoder would import)."""
    if isinstance(value, dict):
        if "__class__" in value:
            yield str(value["__class__"])
        for item in value.values():
            yield from _class_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _class_names(item)


def _with_paths(content: bytes, change: Callable[[str], str]) -> bytes:
    """A JSON result record with `change` applied to every stored path: in its result and its storage key."""
    record = json.loads(content)
    record["result"] = json.dumps(_paths_changed(json.loads(record["result"]), change))
    if isinstance(record["metadata"].get("storage_key"), str):
        record["metadata"]["storage_key"] = change(record["metadata"]["storage_key"])
    return json.dumps(record).encode()


def _paths_changed(value: Any, change: Callable[[str], str]) -> Any:
    """A decoded JSON result with `change` applied to every string in it (the encoded paths: a `Path` as the
    data of its class entry, the path fields of `Data` as plain strings); `change` leaves other text alone."""
    if isinstance(value, dict):
        return {key: _paths_changed(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_paths_changed(item, change) for item in value]
    return change(value) if isinstance(value, str) else value


def run_relative(text: str, run_folder: Path) -> str:
    """`text` as stored: `RUN_MARK`/<path relative to the run folder> when it is an absolute path inside it,
    else unchanged."""
    if not text.startswith("/"):
        return text
    try:
        return "/".join((RUN_MARK, *Path(text).relative_to(run_folder).parts))
    except ValueError:
        return text


def in_run_folder(path: str, run_folder: Path) -> str:
    """A stored path read back: `RUN_MARK`/... resolved inside `run_folder`, any other path unchanged."""
    parts = PurePosixPath(path).parts
    if not parts or parts[0] != RUN_MARK:
        return path
    return str(run_folder.joinpath(*parts[1:]))


class RunResultStorage(LocalFileSystem):
    """A local folder of task results whose records are checked (`check_result_record`) before Prefect
    decodes them, with paths inside `run_folder` stored relative to it."""

    _block_type_name = "cxr-audit run results"  # its own block type, not a replacement of LocalFileSystem's
    run_folder: str

    def _stored(self, content: bytes) -> bytes:
        return _with_paths(content, lambda path: run_relative(path, Path(self.run_folder)))

    def _loaded(self, path: str, content: bytes) -> bytes:
        _checked(self._resolve_path(path), content)
        return _with_paths(content, lambda stored: in_run_folder(stored, Path(self.run_folder)))

    async def aread_path(self, path: str) -> bytes:
        return self._loaded(path, await super().aread_path(path))

    def read_path(self, path: str, _sync: bool = True) -> bytes:
        """The record at `path`, checked (`_sync`: Prefect's flag for a synchronous call; this one always is)."""
        resolved = self._resolve_path(path)
        if not resolved.is_file():
            raise ValueError(f"Path {resolved} does not exist.")  # Prefect's own message for a missing record
        return self._loaded(path, resolved.read_bytes())

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await super().awrite_path(path, self._stored(content))

    def write_path(self, path: str, content: bytes, _sync: bool = True) -> str:
        """Write the record at `path` with its run-folder paths made relative (`_sync`: as in `read_path`)."""
        resolved = self._resolve_path(path)
        resolved.parent.mkdir(parents=True, exist_ok=True)
        resolved.write_bytes(self._stored(content))
        return str(resolved)


def _checked(path: Path, content: bytes) -> None:
    """`check_result_record`, its refusal logged as a warning (Prefect handles the error quietly)."""
    try:
        check_result_record(path, content)
    except ResultRecordError as error:
        LOG.warning("refused a stored task result: %s", error)
        raise


def run_result_storage(run_folder: Path) -> RunResultStorage:
    """The store of the task results (the resume records) of runs into `run_folder`:
    `<run_folder>/.prefect/results`, through `RunResultStorage`, saved as a Prefect block named after the folder.

    Each run folder has its own store: the cache keys are content keys without the run folder, so with a shared
    store (PREFECT_HOME/storage) a run into another folder with the same inputs would get the first folder's
    results, paths included. Prefect's `result_storage` option takes a block only once it is saved on the server
    (a plain path would give an unchecked `LocalFileSystem`), hence the save, overwriting the folder's block of
    an earlier run. `build_flow` (flows/audit.py) sets it on the audit flow, whose task runs, Dask's included,
    inherit it.
    """
    run_folder = run_folder.resolve()
    storage = RunResultStorage(basepath=str(run_folder / ".prefect" / "results"), run_folder=str(run_folder))
    storage.save(f"run-{hashlib.sha256(str(run_folder).encode()).hexdigest()[:32]}", overwrite=True)
    return storage


def current_run_folder() -> Path:
    """The run folder whose store holds the results of the run in progress (`run_result_storage`)."""
    from prefect.results import get_result_store

    storage = get_result_store().result_storage
    if not isinstance(storage, RunResultStorage):
        raise RuntimeError("the audit's tasks store their results in the run folder: run the flow that "
                           "flows.audit.build_flow returns")
    return Path(storage.run_folder)
