"""Pose axes drawn on images, in the project's angle convention (docs/design.md §3).

The axes are the unit vectors of the head's model frame (x right, y up, z towards the
camera) rotated with :func:`pipeline.core.angles.rotation_from_degrees` and projected the way
300W-LP was generated (weak perspective, image ``y`` pointing down), so a drawing agrees with
:func:`pipeline.core.angles.project_3ddfa` and with every label in the project.

HopeNet's ``draw_axis`` computes the same projection with a hand-expanded formula (its green
axis is our −y: it points down the face); here it is derived from the rotation itself so it
can never drift from the convention. Colours (RGB): x red, y green, z blue.

:class:`DrawingWriter` writes the annotated copies of ``hpekd predict --draw`` (images under
their relative names, one mp4 per video); figures and captions use the functions here too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.angles import rotation_from_degrees
from pipeline.core.images import write_image
from pipeline.core.io import Product, check_folder_output, json_marker, write_json
from pipeline.inference.inputs import InputItem
from pipeline.inference.rows import FrameEntry

AXIS_COLORS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # RGB: x, y, z


def axes_endpoints(
    pitch: float, yaw: float, roll: float, center: Sequence[float], size: float
) -> np.ndarray:
    """Image coordinates [3, 2] of the tips of the x, y, z axes of length ``size`` at ``center``.

    ``R @ e_k`` projected orthographically with the y flip of :func:`project_3ddfa`.
    """
    r = rotation_from_degrees(pitch, yaw, roll)
    cx, cy = float(center[0]), float(center[1])
    # columns of R are the rotated unit axes; image y = -model y'
    return np.stack([cx + size * r[0, :], cy - size * r[1, :]], axis=1)


def draw_axes(
    rgb: np.ndarray,
    pitch: float,
    yaw: float,
    roll: float,
    center: Sequence[float],
    size: float,
    thickness: int = 2,
    colors: Sequence[tuple[int, int, int]] = AXIS_COLORS,
) -> np.ndarray:
    """Draw the pose axes on ``rgb`` (uint8 HWC, modified in place) and return it.

    ``center`` = (x, y) pixel origin of the axes (e.g. the face box center), ``size`` = axis
    length in pixels (e.g. half the box height). For a predicted-vs-true figure draw the
    prediction with a larger ``thickness`` than the ground truth.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"draw_axes needs an RGB uint8 [H, W, 3] image, got {rgb.dtype} {rgb.shape}")
    if not rgb.flags.c_contiguous or not rgb.flags.writeable:
        raise ValueError("draw_axes draws in place: pass a writeable C-contiguous array (np.ascontiguousarray)")
    tips = axes_endpoints(pitch, yaw, roll, center, size)
    origin = (int(round(center[0])), int(round(center[1])))
    for k in range(3):
        tip = (int(round(tips[k, 0])), int(round(tips[k, 1])))
        cv2.line(rgb, origin, tip, tuple(int(c) for c in colors[k]), int(thickness), cv2.LINE_AA)
    return rgb


def draw_face(
    rgb: np.ndarray,
    box: Sequence[float],
    pitch: float,
    yaw: float,
    roll: float,
    thickness: int = 2,
    box_color: tuple[int, int, int] | None = (255, 255, 0),
    label: bool = True,
) -> np.ndarray:
    """Box (optional), pose axes at the box center (length = half the box height) and a
    ``p/y/r`` caption, as written by ``hpekd predict --draw``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if box_color is not None:
        cv2.rectangle(rgb, (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2))),
                      box_color, max(1, thickness // 2), cv2.LINE_AA)
    draw_axes(rgb, pitch, yaw, roll, ((x1 + x2) / 2, (y1 + y2) / 2), (y2 - y1) / 2, thickness)
    if label:
        scale = max(0.3, min(1.0, (x2 - x1) / 250))
        text = f"p{pitch:+.0f} y{yaw:+.0f} r{roll:+.0f}"
        org = (int(round(x1)), max(12, int(round(y1)) - 4))
        draw_caption(rgb, text, org, scale)
    return rgb


FONT = cv2.FONT_HERSHEY_SIMPLEX
CAPTION_PAD = 2


def caption_height(scale: float, pad: int = CAPTION_PAD) -> int:
    """Pixel height of the filled box :func:`draw_caption` draws at ``scale``."""
    (_, th), base = cv2.getTextSize("Ag+-0", FONT, scale, 1)
    return th + base + 2 * pad


def draw_caption(
    rgb: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    color: tuple[int, int, int] = (255, 255, 255),
    background: tuple[int, int, int] = (0, 0, 0),
    pad: int = CAPTION_PAD,
) -> tuple[int, int, int, int]:
    """``text`` (thickness 1) on a filled ``background`` box measured with the same font metrics,
    so it is legible on any image (an outline drawn as thicker text grows wider than the text in
    OpenCV 5). ``org``: the bottom-left of the text (OpenCV's convention), moved inside the image
    when it would leave it. Returns the box (x1, y1, x2, y2) that was filled."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    h, w = rgb.shape[:2]
    x = int(min(max(org[0], pad), max(pad, w - tw - pad - 1)))
    y = int(min(max(org[1], th + pad), max(th + pad, h - base - pad - 1)))
    box = (max(0, x - pad), max(0, y - th - pad), min(w - 1, x + tw + pad), min(h - 1, y + base + pad))
    cv2.rectangle(rgb, box[:2], box[2:], background, -1)
    cv2.putText(rgb, text, (x, y), FONT, scale, color, 1, cv2.LINE_AA)
    return box


_WRITABLE = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# marks a folder as `hpekd predict --draw`'s, so a later run may write into it again
MARKER = ".hpekd-drawings.json"
DRAWINGS = Product(f"an hpekd drawings folder ({MARKER})", json_marker(MARKER, ("format",), "hpekd-drawings"))


class DrawingWriter:
    """Writes annotated images under ``root`` (same relative names) and one mp4 per video;
    ``root`` must be absent, empty or an earlier run's drawings (:data:`DRAWINGS`)."""

    def __init__(self, root: Path) -> None:
        check_folder_output(root, DRAWINGS, "--draw")
        root.mkdir(parents=True, exist_ok=True)
        if not (root / MARKER).is_file():
            write_json(root / MARKER, {"format": "hpekd-drawings"})
        self.root = root
        self.used: set[Path] = set()
        self.video_item: InputItem | None = None
        self.writer: cv2.VideoWriter | None = None
        self.video_path: Path | None = None
        self.written: list[Path] = []

    def _target(self, name: str, suffix: str) -> Path:
        rel = Path(name)
        if rel.suffix.lower() not in _WRITABLE or suffix:
            rel = rel.with_suffix(suffix or ".png")
        out = self.root / rel
        stem, n = out.with_suffix(""), 1
        while out in self.used:
            out = Path(f"{stem}_{n}{out.suffix}")
            n += 1
        self.used.add(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def add(self, e: FrameEntry) -> None:
        if e.image is None:
            return
        img = np.ascontiguousarray(e.image).copy()
        assert e.angles is not None
        for box, ang in zip(e.boxes, e.angles):
            draw_face(img, box, *map(float, ang), thickness=max(1, int(round((box[3] - box[1]) / 60))))
        if e.item.kind != "video":
            self._close_video()
            out = self._target(e.item.draw_name or Path(e.item.name).name, "")
            write_image(out, img)
            self.written.append(out)
            return
        if self.video_item is not e.item:
            self._close_video()
            self.video_item = e.item
            self.video_path = self._target(e.item.draw_name or Path(e.item.name).name, ".mp4")
            fps = e.fps if e.fps and math.isfinite(e.fps) else 25.0
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not self.writer.isOpened():
                raise ValueError(f"could not open a video writer for {str(self.video_path)!r} (mp4v codec)")
            self.written.append(self.video_path)
        assert self.writer is not None
        self.writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def _close_video(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.writer, self.video_item = None, None

    def close(self) -> None:
        self._close_video()
