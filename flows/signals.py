"""SIGTERM and SIGHUP end the CLI's child processes before the CLI itself.

Without PREFECT_API_URL the first flow starts Prefect's temporary API server as a child process, which
only an atexit handler stops; a local Dask cluster adds worker processes (which report to that server:
`flows.settings.one_api_server`). A process killed by a signal runs no atexit handler, so those processes would
outlive it (a server still answering on its port). `end_children_on_termination` installs a handler that
terminates every descendant of this process, waits `GRACE_SECONDS`, kills the rest, then dies of the same
signal (the exit status still says "killed by SIGTERM"; a rerun resumes the run folder).

Inside a flow run Prefect's own SIGTERM handler comes first: it marks the flow run crashed, lets a task running
on the task runner finish, closes the Dask cluster (whose nannies kill workers slow to stop, orphaning their
children) and then hands the signal on to this one. On Linux this process is therefore a child subreaper:
orphaned descendants are re-parented to it, not to init, and are still its children when the handler runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from contextlib import suppress
from types import FrameType

import psutil

GRACE_SECONDS = 5.0
SIGNALS = (signal.SIGTERM, signal.SIGHUP)
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def end_children(grace: float = GRACE_SECONDS) -> None:
    """Terminate every descendant of this process; kill those still alive after `grace` seconds."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with suppress(psutil.Error):  # gone already, or not ours to signal
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with suppress(psutil.Error):  # gone already, or not ours to signal
            child.kill()
    psutil.wait_procs(alive, timeout=grace)


def _end_children_and_die(signum: int, frame: FrameType | None) -> None:
    """Signal handler: end the children, then die of `signum` with its default action."""
    end_children()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _adopt_orphans() -> None:
    """Linux: make this process the child subreaper of its descendants (orphans come here, not to init)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def end_children_on_termination() -> None:
    """Handle SIGTERM and SIGHUP by ending this process's descendants first (call from the main thread)."""
    _adopt_orphans()
    for signum in SIGNALS:
        signal.signal(signum, _end_children_and_die)
