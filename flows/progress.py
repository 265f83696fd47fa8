"""Progress of an audit run, stage by stage: the flow says what it starts, how far it is and when it is done;
a reporter shows it. Stages and their wall times are also kept for the end-of-run table and `timings.csv`.

    with stage("text detection", total=120) as advance:   # total: images (None: one step)
        ...
        advance(40)                                      # 40 more images done

The reporter of the process (`use_reporter`) is the CLI's live progress bars on a terminal, plain lines
elsewhere (`LineReporter`, also the default: logged at INFO, so deployments show it in Prefect's logs).
Progress runs in the flow's process: per-image work on Dask workers advances a stage when its chunk returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

LOG = logging.getLogger("cxr_audit.progress")


class Reporter(Protocol):
    """Shows stages: `start` (total units, or None for a single step), `advance` by n units, `finish`."""

    def start(self, name: str, total: int | None) -> None: ...

    def advance(self, name: str, done: int) -> None: ...

    def finish(self, name: str, seconds: float) -> None: ...


@dataclass
class StageTime:
    """One stage of this run: wall time (s) and the units (images) it was given."""

    name: str
    seconds: float
    total: int | None


class LineReporter:
    """A line when a stage starts and one when it ends, and one for every `every` seconds in between."""

    def __init__(self, write: Callable[[str], None] = LOG.info, every: float = 30.0) -> None:
        self.write, self.every = write, every
        self._state: dict[str, tuple[int | None, int, float, float]] = {}  # total, done, started, last line

    def start(self, name: str, total: int | None) -> None:
        now = time.perf_counter()
        self._state[name] = (total, 0, now, now)
        self.write(f"{name}: started" + (f" ({total} images)" if total else ""))

    def advance(self, name: str, done: int) -> None:
        total, count, started, last = self._state[name]
        count, now = count + done, time.perf_counter()
        if now - last >= self.every and total:
            rate = count / max(now - started, 1e-9)
            left = (total - count) / rate if rate > 0 else float("nan")
            self.write(f"{name}: {count}/{total} images, {rate:.2f} images/s, about {left:.0f} s left")
            last = now
        self._state[name] = (total, count, started, last)

    def finish(self, name: str, seconds: float) -> None:
        self.write(f"{name}: done in {seconds:.1f} s")


_reporter: Reporter = LineReporter()
_times: list[StageTime] = []


def use_reporter(reporter: Reporter) -> None:
    """Show this process's stages with `reporter` from now on."""
    global _reporter
    _reporter = reporter


@contextmanager
def stage(name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A stage of the run: reported as started, advanced with the callable it yields, finished and timed
    (also when it fails: the time up to the failure)."""
    started = time.perf_counter()
    _reporter.start(name, total)
    try:
        yield lambda done=1: _reporter.advance(name, done)
    finally:
        seconds = time.perf_counter() - started
        _times.append(StageTime(name, seconds, total))
        _reporter.finish(name, seconds)


def stage_times(since: int = 0) -> list[StageTime]:
    """The stages timed in this process, in order, from the `since`-th on (`len(stage_times())` marks a start)."""
    return _times[since:]


class BarReporter:
    """Live progress bars on a terminal (rich): one per stage, images done / total, rate, elapsed and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]:>14}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True))
        self._tasks: dict[str, int] = {}

    def start(self, name: str, total: int | None) -> None:
        if not self._tasks:
            self._progress.start()
        self._tasks[name] = self._progress.add_task(name, total=total, rate="")

    def advance(self, name: str, done: int) -> None:
        task = self._tasks[name]
        self._progress.advance(task, done)
        speed = self._progress.tasks[task].speed
        self._progress.update(task, rate=f"{speed:.2f} images/s" if speed else "")

    def finish(self, name: str, seconds: float) -> None:
        task = self._tasks[name]
        total = self._progress.tasks[task].total
        self._progress.update(task, total=total or 1, completed=total or 1, description=f"{name} ({seconds:.0f} s)")

    def close(self) -> None:
        """Stop the live display (leaving the finished bars on the screen)."""
        if self._tasks:
            self._progress.stop()
