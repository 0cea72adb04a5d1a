"""Reading an image straight into its crops, decoding a JPEG at reduced size when the box is
much larger than the output.

A crop that shrinks the face by 2× or more does not need every source pixel: libjpeg decodes
at 1/2, 1/4 or 1/8 scale in the DCT domain (``cv2.IMREAD_REDUCED_COLOR_*``), which is cheaper
and averages each f×f block (less aliasing than bilinear sampling of the full image). Pixel
``i`` of the reduced image covers ``[f·i, f·(i + 1))`` of the original, so the box is divided
by ``f`` and :func:`pipeline.core.geometry.crop` maps the same continuous region; the crop
matches the full-size decode up to that anti-aliasing (tested). The factor depends only on the
box and the output size — not on the view or the padding p — so the training crop, the student's
replayed view and the teacher's region Z (whose centre is the training crop) all read the image
the same way. Non-JPEG files are always decoded at full size. The warp runs on the BGR image
and only the crop is converted to RGB (channel order and bilinear interpolation commute, so
this is byte-identical to converting first).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.geometry import crop, validate_box
from pipeline.core.views import View

_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def reduction_factor(box: Sequence[float] | np.ndarray, size: tuple[int, int]) -> int:
    """The largest f in (1, 2, 4, 8) such that the box is at least f× the output (h, w) on both
    axes, i.e. the reduced image still has at least one pixel per output pixel."""
    x1, y1, x2, y2 = validate_box(box)
    h, w = size
    shrink = min((x2 - x1) / w, (y2 - y1) / h)
    f = 1
    while f < 8 and shrink >= 2 * f:
        f *= 2
    return f


def _is_jpeg(data: np.ndarray) -> bool:
    return data.size > 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def read_crops(
    path: str | Path,
    box: Sequence[float] | np.ndarray,
    size: tuple[int, int],
    views: Sequence[View] = (View(),),
    pad: int = 0,
    reduce: bool = True,
) -> list[np.ndarray]:
    """RGB uint8 crops ``[h + 2·pad, w + 2·pad, 3]`` of ``box`` under each of ``views``, from one
    decode of the image (at 1/f of its size for a JPEG when ``reduce`` and f > 1).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file, like
    :func:`pipeline.core.images.read_image`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {str(p)!r} not found")
    data = np.fromfile(p, dtype=np.uint8)
    f = reduction_factor(box, size) if reduce and _is_jpeg(data) else 1
    bgr = cv2.imdecode(data, _REDUCED[f]) if data.size else None
    if bgr is None or bgr.size == 0:
        raise ValueError(f"image {str(p)!r} could not be decoded (empty or not an image file)")
    b = np.asarray(validate_box(box), dtype=np.float64) / f
    return [cv2.cvtColor(crop(bgr, b, size, pad=pad, view=v), cv2.COLOR_BGR2RGB) for v in views]


def read_crop(path: str | Path, box: Sequence[float] | np.ndarray, size: tuple[int, int], view: View = View(),
              pad: int = 0, reduce: bool = True) -> np.ndarray:
    """One crop of :func:`read_crops`."""
    return read_crops(path, box, size, (view,), pad, reduce)[0]
