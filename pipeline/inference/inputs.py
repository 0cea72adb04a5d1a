"""What the predictor reads: image files, directories of images, videos and in-memory arrays.

:func:`collect_inputs` expands the user's paths into :class:`InputItem` s before any work is
done, so a typo fails fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.images import IMAGE_EXTS

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


@dataclass(frozen=True)
class InputItem:
    """One input: an image file, a video file, or an in-memory RGB array."""

    kind: str  # "image" | "video" | "array"
    name: str  # what the output's ``file`` column says
    path: Path | None = None
    draw_name: str = ""  # relative path of the drawing under --draw
    array: np.ndarray | None = field(default=None, compare=False, repr=False)


def collect_inputs(paths: Iterable[str | os.PathLike[str] | np.ndarray]) -> list[InputItem]:
    """Expand files, directories (recursively: image extensions) and arrays into items.

    A path that does not exist, or a directory without images, raises ``ValueError`` before
    any work is done (typos fail fast). Files with a video extension are read as videos; any
    other file is read as an image (an undecodable one becomes an error row later).
    """
    items: list[InputItem] = []
    for i, p in enumerate(paths):
        if isinstance(p, np.ndarray):
            items.append(InputItem("array", f"<array {i}>", draw_name=f"array_{i:04d}.png", array=p))
            continue
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise ValueError(
                    f"directory {str(path)!r} has no images (looked recursively for {', '.join(sorted(IMAGE_EXTS))})"
                )
            for f in found:
                rel = f.relative_to(path)
                items.append(InputItem("image", str(f), f, str(Path(path.resolve().name) / rel)))
        elif path.is_file():
            kind = "video" if path.suffix.lower() in VIDEO_EXTS else "image"
            items.append(InputItem(kind, str(path), path, path.name))
        elif not path.exists():
            raise ValueError(f"input {str(path)!r} does not exist")
        else:
            raise ValueError(f"input {str(path)!r} is neither a file nor a directory")
    if not items:
        raise ValueError("no inputs given: pass image files, directories or videos")
    return items


def check_rgb(rgb: Any, name: str) -> np.ndarray:
    """``rgb`` as an array, or ``ValueError`` naming ``name`` unless it is RGB uint8 [H, W, 3]."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name}: expected an RGB uint8 [H, W, 3] image, got {arr.dtype} {arr.shape}")
    return arr
