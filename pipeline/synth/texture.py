"""Painting the head texture (longitude × latitude) and the colour swatches of the atlas.

Features are drawn with OpenCV at the texture coordinates of the landmarks, so the drawn eyes,
brows, nostrils and lips coincide with landmarks 17-67. Smooth maps (tints, hair mask, noise)
are computed at a quarter of the resolution and upsampled.
"""

from __future__ import annotations

import cv2
import numpy as np

from .head import SWATCH_H, SWATCHES, TEX_H, TEX_W, HeadParams, hair_mask, swatch_uv, tex_uv
from .landmarks import landmark_angles


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    small = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _pts(ang: np.ndarray, idx: list[int] | np.ndarray) -> np.ndarray:
    u, v = tex_uv(ang[idx, 0], ang[idx, 1])
    return np.stack([u, v], 1)


def _curve(points: np.ndarray, n: int = 24) -> np.ndarray:
    """Smooth polyline through ``points`` [K, 2] (Catmull-Rom)."""
    p = np.concatenate([points[:1], points, points[-1:]])
    out = []
    for i in range(1, len(p) - 2):
        t = np.linspace(0, 1, n, endpoint=False)[:, None]
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(points[-1:])
    return np.concatenate(out)


_SHIFT = 4  # sub-pixel bits for cv2 drawing


def _i(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * (1 << _SHIFT)).astype(np.int32)


def _blend(tex: np.ndarray, alpha: np.ndarray, color: np.ndarray | tuple[float, ...],
           roi: tuple[int, int, int, int] | None = None) -> None:
    """tex = (1-α)·tex + α·color, in place; ``alpha`` covers ``roi`` (x0, y0, x1, y1) of tex."""
    x0, y0, x1, y1 = roi if roi is not None else (0, 0, tex.shape[1], tex.shape[0])
    t = tex[y0:y1, x0:x1]
    a = alpha[..., None]
    t *= 1 - a
    t += a * np.asarray(color, dtype=np.float32)


def _roi(points: np.ndarray, pad: float) -> tuple[int, int, int, int]:
    lo = np.floor(points.min(0) - pad).astype(int)
    hi = np.ceil(points.max(0) + pad).astype(int)
    return (max(0, int(lo[0])), max(0, int(lo[1])), min(TEX_W, int(hi[0])), min(TEX_H, int(hi[1])))


_GRAIN: np.ndarray | None = None


def _grain() -> np.ndarray:
    """Fixed per-pixel skin grain (same for every head; heads use random offsets into it)."""
    global _GRAIN
    if _GRAIN is None:
        g = np.random.default_rng(20240611).standard_normal((2 * TEX_H, 2 * TEX_W, 1)).astype(np.float32)
        _GRAIN = np.ascontiguousarray(np.repeat(1.0 + 0.03 * g, 3, axis=2))
    return _GRAIN


def _gauss(x: np.ndarray, s: float) -> np.ndarray:
    return np.exp(-0.5 * (x / s) ** 2)


def _skin_base(rng: np.random.Generator, hp: HeadParams, skin: np.ndarray, th: np.ndarray,
               ph: np.ndarray) -> np.ndarray:
    """Skin colour at quarter resolution: a smooth multiplicative tint map (shading, eye sockets,
    nose sides, under-lip shadow, cheek redness) times ``skin``, with stubble if ``hp.beard``."""
    f = hp.face
    qh, qw = TEX_H // 4, TEX_W // 4
    at = np.abs(th)
    g = _gauss
    shade = 1.0 + 0.05 * _noise(rng, (qh, qw), (8, 16))
    shade = shade - 0.16 * g(at - f["eye_x"], f["eye_w"] * 1.1) * g(ph - f["eye_y"] - 0.005, 0.05)  # sockets
    shade = shade - 0.08 * g(at - f["nose_w"] * 1.2, 0.05) * g(ph - (f["nose_tip"] + f["eye_y"]) / 2, 0.12)
    shade = shade - 0.1 * g(th, 0.12) * g(ph - (f["mouth_y"] - f["lip_low"] - 0.05), 0.025)  # under lip
    red = 0.07 * g(at - f["eye_x"] - 0.04, 0.12) * g(ph - f["eye_y"] + 0.26, 0.09)  # cheeks
    red = red + 0.04 * g(th, 0.06) * g(ph - f["nose_tip"], 0.05)
    tint = np.stack([shade + red, shade - 0.3 * red, shade - 0.3 * red], -1).astype(np.float32)
    base = tint * skin
    if hp.beard > 0:  # stubble, blended at low resolution
        bm = g(ph - (f["mouth_y"] - 0.08), 0.2) * (at < f["jaw_theta"] * 0.85) * (ph < f["nose_tip"] - 0.03)
        bm = cv2.GaussianBlur((bm * hp.beard).astype(np.float32), (0, 0), 1.5)[..., None]
        base = base * (1 - bm) + bm * np.array(hp.hair, np.float32) * 0.8
    return base


def _paint_hair(rng: np.random.Generator, tex: np.ndarray, hp: HeadParams, th: np.ndarray, ph: np.ndarray) -> None:
    """Blend streaked hair colour over ``tex`` where the (quarter-resolution) hair mask is set."""
    qh = TEX_H // 4
    hm = hair_mask(hp, th, ph).astype(np.float32)
    if hm.any():  # hair: streaks vary along the longitude only, so build them at (qh, TEX_W)
        strands = 1 + _noise(rng, (qh, TEX_W), (24, TEX_W // 4)) * 0.12 + _noise(rng, (qh, TEX_W), (6, 24)) * 0.1
        hair = cv2.resize(strands[..., None] * np.array(hp.hair, np.float32), (TEX_W, TEX_H),
                          interpolation=cv2.INTER_LINEAR)
        hm = cv2.resize(hm, (TEX_W, TEX_H), interpolation=cv2.INTER_LINEAR)
        cv2.blendLinear(tex, hair, 1 - hm, hm, dst=tex)


def _apply_grain(rng: np.random.Generator, tex: np.ndarray) -> None:
    """Multiply ``tex`` by a window of the fixed skin grain at a random offset."""
    oy, ox = int(rng.integers(TEX_H)), int(rng.integers(TEX_W))
    cv2.multiply(tex, _grain()[oy:oy + TEX_H, ox:ox + TEX_W], dst=tex)


def _paint_brows(tex: np.ndarray, hp: HeadParams, ang: np.ndarray) -> None:
    """Tapered brow strokes along landmarks 17-21 and 22-26."""
    f = hp.face
    thick = max(2, int(round(f["brow_th"] * TEX_H / np.pi)))
    for idx in ([17, 18, 19, 20, 21], [22, 23, 24, 25, 26]):
        c = _curve(_pts(ang, idx), 8)
        roi = _roi(c, thick + 4)
        c = c - np.array(roi[:2])
        layer = np.zeros((roi[3] - roi[1], roi[2] - roi[0]), np.float32)
        for k in range(len(c) - 1):
            w = int(round(thick * (0.6 + 0.5 * np.sin(np.pi * (0.15 + 0.7 * k / len(c))))))
            cv2.line(layer, tuple(_i(c[k])), tuple(_i(c[k + 1])), 1.0, max(1, w), cv2.LINE_AA, _SHIFT)
        layer = cv2.GaussianBlur(layer, (0, 0), 1.2)
        _blend(tex, np.clip(layer, 0, 1) * 0.85, np.array(hp.hair) * 0.55, roi)


def _paint_eyes(tex: np.ndarray, hp: HeadParams, ang: np.ndarray) -> None:
    """Both eyes: landmarks (outer, upper 1, upper 2, inner, lower 1, lower 2) per side."""
    iris = np.array(hp.iris, dtype=np.float32)
    for side in ((36, 37, 38, 39, 40, 41), (45, 44, 43, 42, 47, 46)):
        _paint_eye(tex, hp, ang, side, iris)


def _paint_eye(tex: np.ndarray, hp: HeadParams, ang: np.ndarray, side: tuple[int, ...], iris: np.ndarray) -> None:
    """One eye: sclera, iris, pupil and highlight inside the lid outline, then lid lines and crease."""
    o, u1, u2, inner, l1, l2 = side
    upper = _curve(_pts(ang, [o, u1, u2, inner]), 10)
    lower = _curve(_pts(ang, [inner, l1, l2, o]), 10)
    poly = np.concatenate([upper, lower])
    eh = hp.face["eye_h"] * TEX_H / np.pi
    roi = _roi(poly, eh * 2 + 4)
    org = np.array(roi[:2], dtype=np.float64)
    upper, lower, poly = upper - org, lower - org, poly - org
    shape = (roi[3] - roi[1], roi[2] - roi[0])
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [_i(poly)], 1.0, cv2.LINE_AA, _SHIFT)
    ctr = _pts(ang, [o, inner]).mean(0) - org + np.array([0.0, -0.2 * eh])
    eye = np.empty(shape + (3,), np.float32)
    eye[:] = np.array([235, 232, 228], np.float32) * 0.9
    cv2.circle(eye, tuple(_i(ctr)), int(round(eh * 1.15 * 16)), tuple(float(x) for x in iris), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(eye, tuple(_i(ctr)), int(round(eh * 0.5 * 16)), (8.0, 8.0, 10.0), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(eye, tuple(_i(ctr + np.array([eh * 0.3, -eh * 0.3]))), int(round(eh * 0.18 * 16)),
               (250.0, 250.0, 250.0), -1, cv2.LINE_AA, _SHIFT)
    t = tex[roi[1]:roi[3], roi[0]:roi[2]]
    t *= 1 - mask[..., None]
    t += eye * mask[..., None]
    lid = np.zeros(shape, np.float32)
    cv2.polylines(lid, [_i(upper)], False, 1.0, max(2, int(round(eh * 0.4))), cv2.LINE_AA, _SHIFT)
    cv2.polylines(lid, [_i(lower)], False, 0.4, 1, cv2.LINE_AA, _SHIFT)
    crease = upper + np.array([0.0, -eh * 0.9])
    cv2.polylines(lid, [_i(crease[3:-3])], False, 0.25, 2, cv2.LINE_AA, _SHIFT)
    _blend(tex, cv2.GaussianBlur(lid, (0, 0), 0.7), (25.0, 18.0, 16.0), roi)


def _paint_nostrils(tex: np.ndarray, hp: HeadParams, ang: np.ndarray, skin: np.ndarray) -> None:
    """Dark ellipses just above landmarks 32 and 34."""
    f = hp.face
    for k in (32, 34):
        p = _pts(ang, [k])[0] + np.array([0.0, -0.012 * TEX_H / np.pi])
        ax = (f["nose_w"] * 0.26 * TEX_H / np.pi, 0.013 * TEX_H / np.pi)
        roi = _roi(p[None], ax[0] + 4)
        nos = np.zeros((roi[3] - roi[1], roi[2] - roi[0]), np.float32)
        cv2.ellipse(nos, tuple(_i(p - np.array(roi[:2]))), (int(ax[0] * 16), int(ax[1] * 16)), 0, 0, 360, 1.0, -1,
                    cv2.LINE_AA, _SHIFT)
        _blend(tex, cv2.GaussianBlur(nos, (0, 0), 1.0) * 0.8, skin * 0.3, roi)


def _paint_mouth(tex: np.ndarray, hp: HeadParams, ang: np.ndarray) -> None:
    """Lips (outer outline, landmarks 48-59) and the dark mouth opening (inner outline, 60-67)."""
    upper = _curve(_pts(ang, [48, 49, 50, 51, 52, 53, 54]), 6)
    lower = _curve(_pts(ang, [54, 55, 56, 57, 58, 59, 48]), 6)
    inner_up = _curve(_pts(ang, [48, 60, 61, 62, 63, 64, 54]), 6)
    inner_lo = _curve(_pts(ang, [54, 64, 65, 66, 67, 60, 48]), 6)
    roi = _roi(np.concatenate([upper, lower]), 6)
    org = np.array(roi[:2], dtype=np.float64)
    shape = (roi[3] - roi[1], roi[2] - roi[0])
    lips = np.zeros(shape, np.float32)
    cv2.fillPoly(lips, [_i(np.concatenate([upper, lower]) - org)], 1.0, cv2.LINE_AA, _SHIFT)
    _blend(tex, cv2.GaussianBlur(lips, (0, 0), 0.8) * 0.85, hp.lip, roi)
    mouth = np.zeros(shape, np.float32)
    cv2.fillPoly(mouth, [_i(np.concatenate([inner_up, inner_lo]) - org)], 1.0, cv2.LINE_AA, _SHIFT)
    cv2.polylines(mouth, [_i(inner_up - org)], False, 1.0, 2, cv2.LINE_AA, _SHIFT)
    _blend(tex, cv2.GaussianBlur(mouth, (0, 0), 0.8) * 0.9, (45.0, 15.0, 18.0), roi)


def _paint_swatches(atlas: np.ndarray, hp: HeadParams, skin: np.ndarray) -> None:
    """The flat colour swatches below the texture (ear, neck, clothes, inner ear); the rest black."""
    colours = {"ear": skin * 0.97 * np.array([1.02, 0.96, 0.96]), "neck": skin * 0.9,
               "clothes": np.array(hp.clothes), "inner_ear": skin * 0.75}
    for name in SWATCHES:
        u, _ = swatch_uv(name)
        atlas[TEX_H:, int(u) - 16:int(u) + 16] = colours[name]
    atlas[TEX_H:, len(SWATCHES) * 32:] = 0


def paint_texture(hp: HeadParams) -> np.ndarray:
    """float32 RGB atlas [TEX_H + SWATCH_H, TEX_W, 3] in 0-255.

    The steps draw from one generator seeded by ``hp.scene_seed``, in this order: skin tint
    noise, hair streaks (only if the head has hair), grain offset.
    """
    rng = np.random.default_rng(hp.scene_seed)
    ang = landmark_angles(hp.face)
    skin = np.array(hp.skin, dtype=np.float32)
    qh, qw = TEX_H // 4, TEX_W // 4
    # longitude / latitude grids of the quarter-resolution smooth maps
    th = np.linspace(-np.pi, np.pi, qw)[None, :]
    ph = np.linspace(np.pi / 2, -np.pi / 2, qh)[:, None]
    base = _skin_base(rng, hp, skin, th, ph)
    atlas = np.empty((TEX_H + SWATCH_H, TEX_W, 3), np.float32)
    tex = atlas[:TEX_H]
    cv2.resize(base, (TEX_W, TEX_H), dst=tex, interpolation=cv2.INTER_LINEAR)
    _paint_hair(rng, tex, hp, th, ph)
    _apply_grain(rng, tex)
    _paint_brows(tex, hp, ang)
    _paint_eyes(tex, hp, ang)
    _paint_nostrils(tex, hp, ang, skin)
    _paint_mouth(tex, hp, ang)
    _paint_swatches(atlas, hp, skin)
    return atlas
