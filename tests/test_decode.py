"""Reduced-size JPEG decode for crops (pipeline.core.decode): exact geometry, close pixels,
the same read in the training dataset and the teacher job, deterministic bytes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.core.decode import read_crop, read_crops, reduction_factor
from pipeline.core.geometry import crop
from pipeline.core.images import read_image, write_image
from pipeline.core.views import View
from pipeline.data.datasets import PoseDataset
from pipeline.teacher.job import ZDataset

SIDE = 448
DISK = (201.0, 236.0)  # disk center, pixel-index coordinates


def smooth_image(seed: int = 0) -> np.ndarray:
    """A smooth colour field with one bright disk (a landmark with a known position)."""
    rng = np.random.default_rng(seed)
    small = (rng.random((8, 8, 3)) * 200 + 20).astype(np.float32)
    img = cv2.resize(small, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    disk = (xx - DISK[0]) ** 2 + (yy - DISK[1]) ** 2 <= 30.0**2
    img[disk] = 250.0
    return cv2.GaussianBlur(np.clip(img, 0, 255), (0, 0), 1.5).astype(np.uint8)


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decode") / "face.jpg"
    write_image(path, smooth_image(), quality=95)
    return path


def centroid(img: np.ndarray) -> np.ndarray:
    m = np.clip(img.astype(np.float64).mean(-1) - 200.0, 0, None)  # intensity-weighted, sub-pixel
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return np.array([(m * xx).sum() / m.sum(), (m * yy).sum() / m.sum()])


def test_reduction_factor() -> None:
    assert reduction_factor((0, 0, 300, 300), (64, 64)) == 4
    assert reduction_factor((0, 0, 300, 300), (224, 224)) == 1
    assert reduction_factor((10, 10, 140, 140), (64, 64)) == 2
    assert reduction_factor((0, 0, 600, 130), (64, 64)) == 2  # the smaller shrink decides
    assert reduction_factor((0, 0, 4000, 4000), (16, 16)) == 8
    with pytest.raises(ValueError, match="degenerate"):
        reduction_factor((5, 5, 5, 9), (64, 64))


@pytest.mark.parametrize("size, f", [(64, 4), (100, 2), (40, 8)])
def test_reduced_crop_matches_full_decode(jpeg: Path, size: int, f: int) -> None:
    box = (40.5, 60.25, 370.0, 390.0)
    assert reduction_factor(box, (size, size)) == f
    full = read_image(jpeg)
    for view in (View(), View(True, 11.0), View(False, -14.5)):
        fast = read_crop(jpeg, box, (size, size), view)
        ref = crop(full, box, (size, size), view=view)
        assert fast.shape == ref.shape == (size, size, 3) and fast.dtype == np.uint8
        diff = np.abs(fast.astype(np.int16) - ref.astype(np.int16))
        assert diff.mean() < 2.0 and np.percentile(diff, 99) < 24, (f, view, diff.mean())
        # the geometry is exact: the landmark lands on the same output position
        np.testing.assert_allclose(centroid(fast), centroid(ref), atol=0.2)


def test_no_reduction_is_byte_identical(jpeg: Path, tmp_path: Path) -> None:
    box = (40.5, 60.25, 370.0, 390.0)
    full = read_image(jpeg)
    view = View(True, 7.0)
    np.testing.assert_array_equal(read_crop(jpeg, box, (64, 64), view, reduce=False),
                                  crop(full, box, (64, 64), view=view))
    png = tmp_path / "face.png"  # never reduced: OpenCV would resize a PNG after a full decode
    write_image(png, full)
    np.testing.assert_array_equal(read_crop(png, box, (64, 64), view), crop(full, box, (64, 64), view=view))
    z = read_crops(jpeg, box, (224, 224), [View(), view], pad=6)  # f = 1 at 224
    np.testing.assert_array_equal(z[1], crop(full, box, (224, 224), pad=6, view=view))


def test_deterministic_and_errors(jpeg: Path, tmp_path: Path) -> None:
    box = (40.5, 60.25, 370.0, 390.0)
    a = read_crop(jpeg, box, (64, 64), View(True, 3.0))
    b = read_crop(jpeg, box, (64, 64), View(True, 3.0))
    assert a.tobytes() == b.tobytes()
    with pytest.raises(FileNotFoundError, match="not found"):
        read_crop(tmp_path / "missing.jpg", box, (64, 64))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xffnot a jpeg")
    with pytest.raises(ValueError, match="could not be decoded"):
        read_crop(tmp_path / "bad.jpg", box, (64, 64))


def test_student_crop_is_the_center_of_the_teacher_region(jpeg: Path) -> None:
    """Training dataset and teacher job read the image the same way (also when reduced)."""
    size, p = 64, 3
    box = np.array([40.5, 60.25, 370.0, 390.0])
    df = pd.DataFrame([dict(sample_id="t/face.jpg#0", dataset="t", split="train", root=str(jpeg.parent),
                            image_path=jpeg.name, pitch=5.0, yaw=-20.0, roll=3.0, status="ok", reason="",
                            x1=box[0], y1=box[1], x2=box[2], y2=box[3])])
    stored = np.array([[[0.0, 0.0], [1.0, 12.5]]], dtype=np.float32)  # [N, V, (flip, angle)]
    zset = ZDataset([str(jpeg)], box[None], stored, (size, size), p)
    for k in range(2):
        ds = PoseDataset(df, "train", size, train=False,
                         view_fn=lambda row, rng, k=k: (View(bool(stored[row, k, 0]), float(stored[row, k, 1])), k))
        item = ds[0]
        z = zset[0][k].numpy()
        np.testing.assert_array_equal(item["image"].numpy().transpose(1, 2, 0), z[p : p + size, p : p + size])
        assert int(item["view_id"]) == k
