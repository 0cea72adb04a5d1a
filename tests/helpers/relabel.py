"""Test helpers for relabeling: cartoon faces that real detectors find, and tiny manifests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.core.images import write_image
from pipeline.manifest.schema import COLUMNS


def draw_cartoon_face(img: np.ndarray, cx: float, cy: float, s: float = 1.0) -> tuple[float, float, float, float]:
    """Draw a frontal cartoon face (≈130·s × 170·s px) centred at (cx, cy) onto RGB ``img`` in
    place; returns its "landmark box" (brows to chin, cheek to cheek)."""
    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(cx + x * s)), int(round(cy + y * s))

    def r(v: float) -> int:
        return max(1, int(round(v * s)))

    cv2.ellipse(img, p(0, -20), (r(75), r(95)), 0, 180, 360, (20, 30, 40), -1)          # hair
    cv2.ellipse(img, p(0, 0), (r(65), r(85)), 0, 0, 360, (120, 150, 190), -1)           # skin (BGR-ish)
    for sx in (-1, 1):
        cv2.ellipse(img, p(sx * 25, -38), (r(15), r(4)), 0, 180, 360, (25, 35, 50), -1)  # brow
        cv2.ellipse(img, p(sx * 25, -20), (r(13), r(7)), 0, 0, 360, (240, 240, 240), -1)
        cv2.circle(img, p(sx * 25, -20), r(6), (30, 40, 60), -1)
        cv2.circle(img, p(sx * 25, -20), r(3), (10, 10, 10), -1)
    cv2.fillPoly(img, [np.array([p(0, -15), p(-9, 18), p(9, 18)])], (90, 115, 160))     # nose
    cv2.ellipse(img, p(0, 45), (r(25), r(9)), 0, 0, 360, (60, 60, 150), -1)             # mouth
    cv2.line(img, p(-24, 45), p(24, 45), (30, 30, 90), r(2))
    img[:] = img[..., ::-1]  # colours above are BGR: convert in place to RGB
    return cx - 62 * s, cy - 42 * s, cx + 62 * s, cy + 85 * s


def cartoon_image(size: tuple[int, int], faces: list[tuple[float, float, float]], seed: int = 0) -> tuple[np.ndarray, list]:
    """RGB image (h, w) with faces at (cx, cy, scale); returns (image, landmark boxes)."""
    h, w = size
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    boxes = []
    for cx, cy, s in faces:
        face = np.zeros_like(img)
        mask = np.zeros((h, w), np.uint8)
        box = draw_cartoon_face(face, cx, cy, s)
        cv2.ellipse(mask, (int(cx), int(cy - 10 * s)), (int(78 * s), int(100 * s)), 0, 0, 360, 255, -1)
        img[mask > 0] = face[mask > 0]
        boxes.append(box)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return img, boxes


MANIFEST_FLOATS = ("pitch", "yaw", "roll", "lm_x1", "lm_y1", "lm_x2", "lm_y2", "face_x1", "face_y1", "face_x2", "face_y2")


def make_manifest(rows: list[dict]) -> pd.DataFrame:
    """Manifest rows with CONTRACT columns; missing keys get defaults."""
    full = []
    for r in rows:
        d = dict(dataset="ds", split="train", pitch=0.0, yaw=0.0, roll=0.0, lm_x1=np.nan, lm_y1=np.nan,
                 lm_x2=np.nan, lm_y2=np.nan, face_x1=np.nan, face_y1=np.nan, face_x2=np.nan, face_y2=np.nan,
                 group="", labelled=True, status="ok", reason="")
        d.update(r)
        d.setdefault("sample_id", f"{d['dataset']}/{d['image_path']}#0")
        full.append(d)
    df = pd.DataFrame(full)
    for c in MANIFEST_FLOATS:
        df[c] = df[c].astype(np.float32)
    df["labelled"] = df["labelled"].astype(bool)
    return df[list(COLUMNS)]


def write_images(root: Path, images: dict[str, np.ndarray]) -> None:
    for rel, img in images.items():
        write_image(root / rel, img)


class BlobDetector:
    """Fake detector: every bright square (all channels > 200 except red encodes the score) is a
    'face'. Draw squares with colour (round(255 * score), 230, 230). Counts its calls."""

    name = "blobs"

    def __init__(self, score_threshold: float = 0.0, fail_after: int | None = None) -> None:
        self.calls = 0
        self.score_threshold = score_threshold
        self.fail_after = fail_after

    def detect(self, rgb: np.ndarray) -> list:
        from pipeline.relabel.detect import Detection

        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        mask = ((rgb[..., 1] > 200) & (rgb[..., 2] > 200)).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        out = []
        for i in range(1, n):
            x, y, w, h, _ = stats[i]
            red = float(rgb[y + h // 2, x + w // 2, 0]) / 255.0
            if red >= self.score_threshold:
                out.append(Detection((float(x), float(y), float(x + w), float(y + h)), red, None))
        return sorted(out, key=lambda d: -d.score)


def blob_image(size: tuple[int, int], squares: list[tuple[int, int, int, int, float]]) -> np.ndarray:
    """RGB image with squares (x1, y1, x2, y2, score) for :class:`BlobDetector`."""
    img = np.full((*size, 3), 40, np.uint8)
    for x1, y1, x2, y2, s in squares:
        img[y1:y2, x1:x2] = (round(255 * s), 230, 230)
    return img
