"""Helpers for the inference tests: a tiny checkpoint, a fake grid detector, generated media."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.model.checkpoint import checkpoint_state, save_checkpoint
from pipeline.model.network import HeadPoseNet, ModelSpec
from pipeline.relabel.detect import Detection

CELL = 80  # generated images are grids of CELL×CELL cells; a non-black cell holds one "face"
MARGIN = 10


def make_checkpoint(path: Path, kind: str = "student", size: tuple[int, int] = (64, 64),
                    bin_sizes: tuple[float, ...] = (1, 2), regression: bool = False, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    spec = ModelSpec("resnet18", bin_sizes=bin_sizes, regression=regression)
    model = HeadPoseNet(spec).eval()
    with torch.no_grad():  # sharpen the random heads so predictions differ clearly between faces
        for head in model.heads.values():
            head.weight.mul_(40.0)
    save_checkpoint(path, checkpoint_state(kind, model, size))
    return path


def draw_face(rng: np.random.Generator) -> np.ndarray:
    """A CELL×CELL patch with a random face-like drawing (textured, never black)."""
    img = (rng.random((CELL, CELL, 3)) * 60 + 60).astype(np.uint8)
    c = (CELL // 2 + int(rng.integers(-4, 5)), CELL // 2 + int(rng.integers(-4, 5)))
    cv2.ellipse(img, c, (24, 30), float(rng.uniform(-30, 30)), 0, 360, (210, 160, 130), -1)
    for dx in (-10, 10):
        cv2.circle(img, (c[0] + dx + int(rng.integers(-3, 4)), c[1] - 8), 4, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    cv2.circle(img, (c[0] + int(rng.integers(-6, 7)), c[1] + 4), 3, (240, 200, 40), -1)
    cv2.line(img, (c[0] - 9, c[1] + 15), (c[0] + 9, c[1] + 15 + int(rng.integers(-4, 5))), (160, 20, 40), 3)
    return img


def make_grid_image(faces: list[bool], seed: int = 0) -> np.ndarray:
    """One row of cells; ``faces[i]`` says whether cell i holds a face (else black)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((CELL, CELL * len(faces), 3), np.uint8)
    for i, f in enumerate(faces):
        if f:
            img[:, i * CELL:(i + 1) * CELL] = draw_face(rng)
    return img


class GridDetector:
    """Finds the non-black cells of :func:`make_grid_image` (works on decoded jpg/video frames)."""

    name = "grid"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        self.calls += 1
        out = []
        h, w = rgb.shape[:2]
        for i in range(w // CELL):
            cell = rgb[:, i * CELL:(i + 1) * CELL]
            if cell.mean() > 30:
                box = (i * CELL + MARGIN, MARGIN, (i + 1) * CELL - MARGIN, h - MARGIN)
                out.append(Detection(tuple(float(v) for v in box), 0.9 - 0.1 * i))
        return out[::-1]  # reversed on purpose: the predictor orders faces left to right


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert wr.isOpened(), f"OpenCV cannot write {fourcc} here"
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
    return path
