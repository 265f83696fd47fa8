"""What the benchmark scripts share: where they read and write, the command line and machine their reports name,
how they write their results, and the two fixtures they share with the tests (the tiny audit of the flow tests
and the known-evidence CNN of the igos tests).

Every benchmark runs as a module from the repository root: `python -m benchmarks.NAME [--help]`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from torch import Tensor, nn

from datasets.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ANNOTATIONS = ROOT / "benchmarks" / "annotations"
CLI = Path(sys.executable).parent / "cxr-audit"
# The real Actualmed films are not in the repository: $CXR_AUDIT_REAL_FILMS or the shared folder beside the checkout.
REAL_FILMS = ROOT.parent / "shared" / "real" / "actualmed" / "images"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def real_films_dir(given: Path | None = None) -> Path:
    """The folder of the real films: `given`, else $CXR_AUDIT_REAL_FILMS, else the default beside the checkout."""
    return Path(given or os.environ.get("CXR_AUDIT_REAL_FILMS") or REAL_FILMS)


# ---- the run: command line, date, machine, load ------------------------------------------------------------------


def program(script: str) -> str:
    """How the benchmark `script` (its __file__) is run: `python -m benchmarks.NAME` (its parser's prog)."""
    return f"python -m benchmarks.{Path(script).stem}"


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran the benchmark `script` (its __file__) with `argv` (default: this process's arguments),
    as a report shows it: `python -m benchmarks.NAME ARGS`."""
    return " ".join([program(script), shlex.join(sys.argv[1:] if argv is None else argv)]).rstrip()


def now() -> str:
    """The local date and time with its UTC offset, to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def cpu_arch() -> str:
    """The processor as Python's platform module names it (on Linux the architecture, e.g. x86_64)."""
    return platform.processor() or platform.machine()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. AMD EPYC), else cpu_arch()."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return cpu_arch()


def machine() -> str:
    """CPU model, cores and RAM of this machine."""
    import psutil  # a dependency of dask.distributed (prefect-dask), so always installed with cxr-audit

    return f"{cpu_model()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 1024**3:.1f} GiB RAM"


def load_average() -> float:
    """The 1-minute load average: read at a benchmark's start and end, it says whether other work shared the cores."""
    return os.getloadavg()[0]


def environment(load: tuple[float, float]) -> dict:
    """Date, machine, versions and load (1-min average at start and end) of one benchmark run."""
    return {"date": now(), "machine": machine(), "python": platform.python_version(), "torch": version("torch"),
            "prefect": version("prefect"), "cpu_count": os.cpu_count(), "load_average_1min_start": round(load[0], 2),
            "load_average_1min_end": round(load[1], 2)}


def load_note(env: dict) -> str:
    """The load-average line of a results header, with a warning when other processes competed for the cores."""
    cores = env.get("cpu_count", os.cpu_count())  # results written before cpu_count was recorded: this machine
    busy = max(env["load_average_1min_start"], env["load_average_1min_end"]) > cores
    return (f"- 1-min load average at start / end: {env['load_average_1min_start']} / "
            f"{env['load_average_1min_end']}" + (f" (above {cores}: other processes competed for the cores, so "
                                                 "times are inflated and noisy; memory is not affected)" if busy
                                                 else ""))


# ---- writing the results -----------------------------------------------------------------------------------------


def write_report(path: Path, text: str, notes: str | None = None) -> None:
    """Write the markdown `text` to `path` atomically (its folder created). With `notes`, the heading of a section
    written by hand below the generated tables: the section found in the old file is kept after the new text."""
    old = path.read_text(encoding="utf-8") if notes and path.is_file() else ""
    kept = old[old.index(notes):] if notes and notes in old else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text + ("\n" + kept if kept else ""))


def write_results(markdown_path: Path, result: dict, report: str) -> None:
    """Write the markdown `report` to `markdown_path` and `result` as JSON beside it (same stem, .json); print the
    markdown, and on stderr where both went."""
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(markdown_path.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    write_report(markdown_path, report)
    print(report)
    print(f"written to {markdown_path} and {markdown_path.with_suffix('.json')}", file=sys.stderr)


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W) float image in [0, 1] as 8-bit grayscale PNG bytes."""
    ok, encoded = cv2.imencode(".png", np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8))
    if not ok:
        raise OSError("OpenCV could not encode a PNG")
    return encoded.tobytes()


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A markdown table: the header, its rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


# ---- Prefect -----------------------------------------------------------------------------------------------------


def migrate_prefect(prefect_home: Path) -> None:
    """Create Prefect's database once, before the measured runs, so no run pays for (or hides) the migration."""
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    subprocess.run([str(CLI.with_name("prefect")), "server", "database", "upgrade", "-y"], env=env, check=True,
                   capture_output=True)


# ---- shared with the tests: the tiny audit (tests/flows, faults.py) ----------------------------------------------

# About a minute of work: the flow tests' audit (tests/flows/conftest.py) and the fault run's (faults.py).
TINY = {
    "data.synthetic": {"n_train": 36, "n_test": 12, "image_size": 96, "seed": 1},
    "train": {"architecture": "small_cnn", "image_size": 48, "epochs": 2, "batch_size": 8, "schedule": "onecycle",
              "patience": 2, "val_fraction": 0.2},
    "explain": {"mask_size": 7, "iterations": 2, "ig_steps": 2, "chunk_size": 6},
    "text": {"long_side": 384},
    "compare": {"bootstrap": 100, "extra_train_seeds": [1]},
    "audit": {"gallery_size": 2},
}


def tiny_yaml(path: Path, leave_out: Sequence[str] = ()) -> Path:
    """The tiny audit's settings (TINY, dotted keys; but `leave_out`) as a nested YAML config file."""
    settings: dict = {}
    for key, value in TINY.items():
        if key in leave_out:
            continue
        node = settings
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(settings))
    return path


# ---- shared with the tests: known evidence (tests/igos, igos_modes_agreement.py) ---------------------------------


class WindowEvidenceNet(nn.Module):
    """Logits (n, 2): class 0 is 0; class 1 is gain · (mean of channel-mean pixels in `window` − 0.5).

    A box-filter convolution with stride = kernel averages the input over a grid of windows; a fixed
    linear read-out picks the one at `window` = (top, left, height, width), which must lie on that
    grid. Everything outside it is ignored.
    """

    def __init__(self, size: tuple[int, int], window: tuple[int, int, int, int], channels: int = 1,
                 gain: float = 10.0) -> None:
        super().__init__()
        top, left, height, width = window
        if top % height or left % width:
            raise ValueError("the window must lie on the grid of its own size")
        self.conv = nn.Conv2d(channels, 1, (height, width), stride=(height, width), bias=False)
        nn.init.constant_(self.conv.weight, 1.0 / (channels * height * width))
        out_h, out_w = size[0] // height, size[1] // width
        readout = torch.zeros(2, out_h * out_w)
        readout[1, (top // height) * out_w + left // width] = gain
        self.readout = nn.Linear(out_h * out_w, 2)
        with torch.no_grad():
            self.readout.weight.copy_(readout)
            self.readout.bias.copy_(torch.tensor([0.0, -0.5 * gain]))

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.conv(x).flatten(1))


def evidence_images(count: int, size: tuple[int, int], window: tuple[int, int, int, int], channels: int = 1,
                    seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    """Dark noisy images (count, C, H, W) with a bright patch in `window` and an equally bright
    distractor patch of the same size elsewhere (mirrored position), which the model ignores."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 + 0.05 * torch.rand(count, channels, *size, generator=generator, dtype=dtype)
    top, left, height, width = window
    images[:, :, top : top + height, left : left + width] = 0.9
    d_top, d_left = size[0] - top - height, size[1] - left - width
    images[:, :, d_top : d_top + height, d_left : d_left + width] = 0.9
    return images


def window_mask(size: tuple[int, int], window: tuple[int, int, int, int]) -> Tensor:
    """Boolean (H, W), True inside the window."""
    top, left, height, width = window
    mask = torch.zeros(size, dtype=torch.bool)
    mask[top : top + height, left : left + width] = True
    return mask


def top_fraction_inside(saliency: Tensor, inside: Tensor, fraction: float = 0.05) -> Tensor:
    """Share of each map's top `fraction` pixels that fall inside `inside`. saliency (B, H, W) -> (B,)."""
    flat = saliency.flatten(1)
    count = max(1, round(fraction * flat.shape[1]))
    top = flat.topk(count, dim=1).indices
    return inside.flatten()[top].double().mean(dim=1)
