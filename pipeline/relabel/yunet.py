"""YuNet (libfacedetection) through the ``yuface`` package.

``yuface.yuface.detect(bgr)`` (the compiled function behind ``yuface.detect``) takes a
contiguous BGR uint8 image and returns an ``int16`` array [N, 16]: confidence in percent,
box x, y, w, h, five landmarks (x, y) pairs, and one unused column. (The Python wrapper's
docstring says ``uint16``; it is ``int16``, so boxes partly left/above the image stay
negative.) The wrapper warns for images larger than 960 px; we downscale those ourselves.
"""

from __future__ import annotations

import numpy as np

from pipeline.relabel.detection import Detection, check_rgb, shrink


class YuNetDetector:
    name = "yunet"

    def __init__(self, score_threshold: float = 0.5, max_side: int = 960) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"yunet: score_threshold must be in [0, 1], got {score_threshold}")
        from yuface.yuface import detect as c_detect

        self._detect = c_detect
        self.score_threshold = float(score_threshold)
        self.max_side = int(max_side)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        check_rgb(rgb, "yunet")
        small, s = shrink(rgb, self.max_side)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        raw = np.asarray(self._detect(bgr), dtype=np.float64).reshape(-1, 16)
        out = []
        for row in raw:
            score = row[0] / 100.0
            if score < self.score_threshold:
                continue
            x, y, w, h = row[1:5] / s
            lms = row[5:15].reshape(5, 2) / s
            out.append(Detection((float(x), float(y), float(x + w), float(y + h)), float(score), lms.astype(np.float32)))
        out.sort(key=lambda d: -d.score)
        return out
