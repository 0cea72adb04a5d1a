"""The 68 iBUG landmarks of the procedural head, defined in surface (θ, φ) coordinates.

Ordering is iBUG-68 (as in 300W-LP): jaw 0-16, right brow 17-21, left brow 22-26, nose
bridge 27-30, nostrils 31-35, right eye 36-41, left eye 42-47, outer lip 48-59, inner lip
60-67. "Right" is the subject's right, which appears on the image *left* in a frontal view
(model x < 0, θ < 0). Only the image-left half and the centre line are written out here; the
other half is its mirror image through :data:`FLIP_PERM`, so the model is exactly symmetric
and a horizontal flip maps landmark ``i`` to ``FLIP_PERM[i]``.

θ is the longitude about the vertical axis (0 = straight ahead, negative = model −x), φ the
latitude (positive up), both in radians; see :mod:`pipeline.synth.head` for the surface.
"""

from __future__ import annotations

import numpy as np

N_LANDMARKS = 68


def _flip_perm() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]
    pairs += [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]
    pairs += [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    perm = np.arange(N_LANDMARKS)
    for i, j in pairs:
        perm[i], perm[j] = j, i
    return perm


FLIP_PERM: np.ndarray = _flip_perm()
"""Index permutation of iBUG-68 under a horizontal flip: landmark i ↔ FLIP_PERM[i]."""

# indices defined explicitly (image-left side and centre line); the rest are mirrored
LEFT_OR_CENTRE = (
    list(range(0, 9)) + list(range(17, 22)) + [27, 28, 29, 30, 31, 32, 33]
    + list(range(36, 42)) + [48, 49, 50, 51, 57, 58, 59, 60, 61, 62, 66, 67]
)


def landmark_angles(f: dict[str, float]) -> np.ndarray:
    """(θ, φ) [68, 2] of every landmark for the facial proportions ``f`` (see FaceShape)."""
    th = np.full(N_LANDMARKS, np.nan)
    ph = np.full(N_LANDMARKS, np.nan)

    def put(i: int, t: float, p: float) -> None:
        th[i], ph[i] = t, p

    # jaw: from the (image-left) ear, down and round to the chin (8)
    for k in range(9):
        a = k / 8 * np.pi / 2
        put(k, -f["jaw_theta"] * np.cos(a) ** 0.85, f["jaw_top"] + (f["chin"] - f["jaw_top"]) * np.sin(a) ** 1.2)
    # right brow, outer → inner
    for k in range(5):
        t = k / 4
        put(17 + k, -(f["eye_x"] + f["eye_w"] * 1.25) + t * f["eye_w"] * 2.2,
            f["brow_y"] + f["brow_arch"] * np.sin(np.pi * (0.25 + 0.7 * t)) - 0.02 * t)
    # nose bridge (27-30) and base (31-33)
    for k in range(4):
        put(27 + k, 0.0, f["eye_y"] + (f["nose_tip"] - f["eye_y"]) * k / 3)
    base = f["nose_tip"] - f["nose_base"]
    put(31, -f["nose_w"], base + 0.018)
    put(32, -f["nose_w"] * 0.5, base - 0.008)
    put(33, 0.0, base - 0.014)
    # right eye: 36 outer corner, 37/38 upper lid, 39 inner corner, 40/41 lower lid
    ex, ew, ey, eh = f["eye_x"], f["eye_w"], f["eye_y"], f["eye_h"]
    put(36, -ex - ew, ey - 0.004)
    put(37, -ex - ew * 0.38, ey + eh)
    put(38, -ex + ew * 0.35, ey + eh * 0.95)
    put(39, -ex + ew, ey)
    put(40, -ex + ew * 0.35, ey - eh * 0.75)
    put(41, -ex - ew * 0.38, ey - eh * 0.75)
    # mouth
    my, mw, ul, ll, op = f["mouth_y"], f["mouth_w"], f["lip_up"], f["lip_low"], f["mouth_open"]
    put(48, -mw, my)
    put(49, -mw * 0.6, my + ul * 0.75)
    put(50, -mw * 0.22, my + ul)
    put(51, 0.0, my + ul * 0.8)
    put(59, -mw * 0.6, my - ll * 0.8)
    put(58, -mw * 0.25, my - ll)
    put(57, 0.0, my - ll * 1.02)
    put(60, -mw * 0.85, my)
    put(61, -mw * 0.3, my + op * 0.5)
    put(62, 0.0, my + op * 0.5)
    put(67, -mw * 0.3, my - op * 0.5)
    put(66, 0.0, my - op * 0.5)
    for i in range(N_LANDMARKS):
        j = FLIP_PERM[i]
        if i in LEFT_OR_CENTRE and j != i:
            th[j], ph[j] = -th[i], ph[i]
    assert not np.isnan(th).any() and not np.isnan(ph).any()
    return np.stack([th, ph], axis=1)
