"""Figures of the evaluation: a grid of test faces with predicted (bold) and true (thin)
pose axes, like the paper's Fig. 7.

Axes are drawn with :func:`pipeline.inference.drawing.draw_axes` (helper G's module, the one drawing
convention of the project: x red, y green, z blue, derived from the 3DDFA rotation).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.core.images import write_image
from pipeline.core.io import atomic_path
from pipeline.inference.drawing import draw_axes

TRUE_COLORS = ((255, 150, 150), (150, 255, 150), (150, 150, 255))  # lighter x/y/z for the ground truth


def pose_tile(crop: np.ndarray, pred: Sequence[float], true: Sequence[float], caption: str = "") -> np.ndarray:
    """One face crop with the true pose as thin light axes and the prediction as bold axes."""
    img = np.ascontiguousarray(crop.copy())
    h, w = img.shape[:2]
    center, size = (w / 2, h / 2), 0.42 * min(h, w)
    bold, thin = max(2, round(min(h, w) / 50)), max(1, round(min(h, w) / 150))
    draw_axes(img, *true, center=center, size=size, thickness=thin, colors=TRUE_COLORS)
    draw_axes(img, *pred, center=center, size=size, thickness=bold)
    if caption:
        scale = max(0.3, min(h, w) / 400)
        for color, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(img, caption, (3, h - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, color, width, cv2.LINE_AA)
    return img


def pose_grid(
    crops: Sequence[np.ndarray], preds: np.ndarray, trues: np.ndarray, captions: Sequence[str] | None = None,
    columns: int = 6,
) -> np.ndarray:
    """Tile :func:`pose_tile` images (all the same size) into one RGB image."""
    if not len(crops):
        raise ValueError("no faces to draw")
    tiles = [pose_tile(c, p, t, captions[i] if captions else "") for i, (c, p, t) in enumerate(zip(crops, preds, trues))]
    h, w = tiles[0].shape[:2]
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((rows * (h + 4) + 4, cols * (w + 4) + 4, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[4 + r * (h + 4): 4 + r * (h + 4) + h, 4 + c * (w + 4): 4 + c * (w + 4) + w] = tile
    return grid


def write_pose_grid(path: str | os.PathLike[str], grid: np.ndarray) -> None:
    with atomic_path(path, os.path.splitext(str(path))[1] or ".png") as tmp:
        write_image(tmp, grid)
