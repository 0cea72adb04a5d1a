"""What every detector backend shares: the :class:`Detection` record it returns, the RGB input
check and the resize for large images (imported by the backends, never the other way round)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class Detection:
    """One detected face: ``box`` = (x1, y1, x2, y2) pixels, ``score`` in [0, 1],
    ``landmarks`` = [5, 2] (eyes, nose tip, mouth corners) or ``None``."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)


def check_rgb(rgb: np.ndarray, who: str) -> np.ndarray:
    """Validate an RGB uint8 [H, W, 3] image (ValueError otherwise)."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"{who}: expected an RGB image [H, W, 3], got shape {shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{who}: empty image (shape {rgb.shape})")
    if rgb.dtype != np.uint8:
        raise ValueError(f"{who}: expected a uint8 image, got {rgb.dtype}")
    return rgb


def shrink(img: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most ``max_side``; returns (image, scale factor)."""
    h, w = img.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return img, 1.0
    s = max_side / max(h, w)
    out = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return out, s
