"""Writing COVIDx++ images as their source is stored, so that no file-level trait tells cleaned films from
text-free ones.

- PNG: cleaned images keep the source's colour type (gray, gray+alpha, RGB with the gray value in all
  three channels, RGBA), bit depth, ancillary chunks and every stored value outside the mask (PNG is
  lossless); text-free ones are byte copies (or hard links).
- JPEG: every JPEG, text-free ones too, is decoded and re-encoded by the same path (Pillow, the source's
  colour mode, subsampling and progressive mode; `jpeg_quality` "keep" re-uses each source's own
  quantisation tables), so cleaned and text-free films carry the same double compression. Writing only
  the cleaned ones again would leave the re-encoding itself (3–8 grey levels over the whole film) as a
  mark of "this film had text".
- DICOM: cleaned ones are written by `datasets.dicom.write_dicom_like` (header kept, same Bits
  Allocated/Stored, signedness, photometric interpretation and size, new UIDs, Burned In Annotation
  (0028,0301) "NO"); text-free ones are byte copies. `read_dicom` gives both the same display values
  outside the mask, but the cleaned file stores them uncompressed with an identity rescale and a window
  spanning the stored range, where a copy keeps the source's transfer syntax, rescale and window: a
  loader that ignores the window sees the two alike only through `read_dicom`.

Every file is written atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from datasets.atomic import atomic_path
from datasets.dicom import write_dicom_like
from datasets.images import image_format, write_image

LOG = logging.getLogger(__name__)


def write_cleaned(source: Path, array: np.ndarray, output: Path, *, jpeg_quality: int | str,
                  changed: np.ndarray) -> None:
    """`array` (H, W) in [0, 1] stored at `output` as `source` is (format, depth, colour mode; PNG: only the
    pixels of `changed` (H, W) bool differ); DICOM with Burned In Annotation "NO"."""
    if image_format(source) == "dicom":
        write_dicom_like(source, array, output, burned_in_text_removed=True,
                         derivation="Burned-in text inpainted by cxr-audit (COVIDx++)")
    else:
        write_image(output, array, like=source, jpeg_quality=jpeg_quality, changed=changed)


def write_text_free(source: Path, image: np.ndarray, output: Path, *, jpeg_quality: int | str, link: bool) -> None:
    """A text-free image at `output`: JPEG re-encoded by the cleaned images' path (`image` (H, W) is its decoded
    pixels), PNG and DICOM copied byte for byte (hard-linked when `link`, falling back to a copy)."""
    if image_format(source) == "jpeg":
        write_image(output, image, like=source, jpeg_quality=jpeg_quality)
    else:
        _copy(source, output, link)


def _copy(source: Path, output: Path, link: bool) -> None:
    """Byte-identical copy (or hard link) of `source` at `output`, atomically."""
    with atomic_path(output) as temporary:
        if link:
            try:
                temporary.unlink()
                os.link(source, temporary)
                return
            except OSError:
                LOG.debug("hard link %s -> %s failed; copying", source, output)
        shutil.copyfile(source, temporary)
