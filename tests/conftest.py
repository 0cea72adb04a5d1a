"""Shared fixtures: a tiny, learnable head-pose dataset written in the project's formats.

The faces are a handful of 3D facial points (eyes, brows, nose, mouth, ears, chin) rotated
and projected with the project's 3DDFA convention and drawn as blobs, so the pose is
visible in the pixels (a network can learn it in seconds) and flips/rotations behave like
real heads. The full procedural renderer lives in ``pipeline.synth``; this fixture only
needs to be fast and independent of it.

``HPEKD_TEST_SEED`` (default 0): a learning test (one that asserts a trained model beats a
baseline, a control or a slope) adds :data:`TEST_SEED` to the seed of the data it generates and
to its training seed, so its threshold can be checked under other draws without editing it:
``HPEKD_TEST_SEED=1 pytest -s tests/test_stage1.py``. At 0 every test runs exactly as before.
Each learning test's docstring records the value its assertion checks under seeds 0/1/2 with
pinned and native (``HPEKD_NUMERICS=native``) numerics, and its threshold sits outside that spread.
"""

from __future__ import annotations

import os

from pipeline.core import numerics

# A parent that pinned (dev.py, or pytest's controller for its xdist workers) names in PIN_ADDED
# the variables its pin added. They are taken back before this process pins, so that
# numerics.preset() here is what the host set, not what a parent's pin set: the tests that must
# not override a host's value (and skip where it has one) would otherwise always skip.
PIN_ADDED = "HPEKD_PIN_ADDED"  # the same name in dev.py
for _name in filter(None, os.environ.pop(PIN_ADDED, "").split(",")):
    os.environ.pop(_name, None)
_before = set(os.environ)
numerics.pin()  # the tests run with the pipeline's numerics: before numpy, OpenCV and torch load
os.environ[PIN_ADDED] = ",".join(sorted(set(os.environ) - _before))

# Two test workers share two cores (pyproject's addopts): torch's OpenMP threads must yield rather
# than spin while they wait, or a busy neighbour stalls them several-fold. The wait policy changes
# no result (the work is split by the thread count alone); stages run by the tests inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pipeline.core.angles import project_3ddfa, rotation_from_degrees  # noqa: E402
from pipeline.core.images import write_image  # noqa: E402

SEED_VAR = "HPEKD_TEST_SEED"
TEST_SEED = int(os.environ.get(SEED_VAR, "0"))  # added to the learning tests' data and training seeds

# model-space points (x right, y up, z towards the camera), unit ≈ face half-width
_POINTS = {
    "eye_l": (-0.38, 0.25, 0.55), "eye_r": (0.38, 0.25, 0.55),
    "brow_l": (-0.40, 0.48, 0.58), "brow_r": (0.40, 0.48, 0.58),
    "nose": (0.0, -0.05, 0.95), "mouth": (0.0, -0.45, 0.6),
    "ear_l": (-0.95, 0.05, 0.0), "ear_r": (0.95, 0.05, 0.0), "chin": (0.0, -0.85, 0.35),
}
_COLORS = {
    "eye_l": (30, 60, 200), "eye_r": (200, 60, 30), "brow_l": (20, 20, 20), "brow_r": (20, 20, 20),
    "nose": (240, 200, 40), "mouth": (160, 20, 40), "ear_l": (40, 200, 60), "ear_r": (60, 40, 220),
    "chin": (240, 240, 240),
}


def draw_tiny_face(size: int, pose: tuple[float, float, float], rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """RGB image with one schematic face at ``pose``; returns (image, face box)."""
    img = (rng.random((size, size, 3)) * 60 + 60).astype(np.uint8)
    scale = size * rng.uniform(0.26, 0.32)
    t = (size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3), 0.0)
    pts = np.array(list(_POINTS.values()), dtype=np.float64).T
    uv = project_3ddfa(pts, *pose, scale=scale, t=t, height=size)
    cx, cy = t[0], size - 1 - t[1]
    cv2.ellipse(img, (int(cx), int(cy)), (int(scale * 0.9), int(scale * 1.05)), 0, 0, 360, (210, 160, 130), -1)
    depth = (rotation_from_degrees(*pose) @ pts)[2]
    for i in np.argsort(depth):  # far points first
        name = list(_POINTS)[i]
        if depth[i] < -0.2:
            continue
        r = max(2, int(scale * (0.16 if name.startswith(("eye", "ear")) else 0.12)))
        cv2.circle(img, (int(round(uv[0, i])), int(round(uv[1, i]))), r, _COLORS[name], -1, cv2.LINE_AA)
    half = scale * 1.15
    return img, (cx - half, cy - half, cx + half, cy + half)


def make_tiny_dataset(root: Path, n_train: int = 48, n_test: int = 16, size: int = 64, seed: int = 0,
                      unlabelled: int = 0) -> Path:
    """Write images + ``boxes.parquet`` (CONTRACT columns) under ``root``; returns the parquet path.
    ``unlabelled``: the last that many training rows have no angles (``labelled = false``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        pose = (float(rng.uniform(-30, 30)), float(rng.uniform(-60, 60)), float(rng.uniform(-30, 30)))
        img, box = draw_tiny_face(size, pose, rng)
        rel = f"{split}/img_{i:04d}.png"
        write_image(root / "images" / rel, img)
        labelled = not (n_train - unlabelled <= i < n_train)
        if not labelled:
            pose = (np.nan, np.nan, np.nan)
        rows.append(dict(
            sample_id=f"tiny_{split}/{rel}#0", dataset=f"tiny_{split}", split=split, root=str(root / "images"),
            image_path=rel, pitch=pose[0], yaw=pose[1], roll=pose[2],
            lm_x1=box[0], lm_y1=box[1], lm_x2=box[2], lm_y2=box[3],
            face_x1=np.nan, face_y1=np.nan, face_x2=np.nan, face_y2=np.nan, group="", labelled=labelled,
            status="ok", reason="",
            x1=box[0], y1=box[1], x2=box[2], y2=box[3], box_source="landmarks", det_score=np.nan, fallback=False,
        ))
    df = pd.DataFrame(rows)
    for c in ("pitch", "yaw", "roll", "lm_x1", "lm_y1", "lm_x2", "lm_y2", "face_x1", "face_y1", "face_x2", "face_y2",
              "x1", "y1", "x2", "y2", "det_score"):
        df[c] = df[c].astype(np.float32)
    path = root / "boxes.parquet"
    df.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_boxes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session-wide tiny dataset (read-only for tests): path to its ``boxes.parquet``."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # the pinned thread count (2 unless HPEKD_THREADS says otherwise); natively, 2 as well:
    # CI has 2 cores, and torch's default pool oversubscribes them when tests spawn workers
    torch.set_num_threads(numerics.threads() if numerics.mode() == "pinned" else 2)


def pytest_report_header(config: pytest.Config) -> str:
    return f"hpekd: {numerics.describe()}; {SEED_VAR}={TEST_SEED}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
