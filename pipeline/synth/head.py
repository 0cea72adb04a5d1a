"""Procedural 3D head: random shape/appearance parameters, surface, meshes and landmarks.

Model space (the 3DDFA frame): x to the subject's left (image right at zero pose), y up, z out
of the face towards the camera; the unit is about half the face width. The skull is a radial
surface ``P(θ, φ) = r(θ, φ) · (cos φ sin θ, sin φ, cos φ cos θ)`` — an ellipsoid with a tapered
jaw plus smooth bumps (nose, brow ridge, eye sockets, cheeks, lips, chin, hair volume). θ is the
longitude (0 = straight ahead), φ the latitude. The facial features are painted into a
longitude/latitude texture at the same (θ, φ) as the landmarks (:mod:`.landmarks`), so the
68 landmarks sit exactly on the drawn eyes, brows, nose and mouth. Ears, neck and torso are
separate small meshes. Everything is mirror-symmetric in x (appearance asymmetries such as
the hair parting aside), which the flip tests rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .landmarks import landmark_angles


@dataclass(frozen=True)
class HeadParams:
    """Shape and appearance of one head (all random choices of the renderer except pose)."""

    skull: dict[str, float]  # ellipsoid radii a (x), b_up, b_down (y), c_front, c_back (z), jaw_taper
    face: dict[str, float]  # facial proportions in (θ, φ) radians and bump heights
    skin: tuple[float, float, float]  # RGB 0-255
    lip: tuple[float, float, float]
    iris: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: dict[str, float]  # front/side/back hairline latitudes, thickness (0 = bald)
    clothes: tuple[float, float, float]
    beard: float  # 0..1 darkness of a stubble region
    scene_seed: int  # seeds the texture noise, background and light when not given explicitly
    extras: dict[str, float] = field(default_factory=dict)


_SKIN = np.array([(236, 200, 172), (222, 180, 145), (198, 150, 112), (172, 122, 86),
                  (140, 95, 65), (105, 70, 48), (82, 56, 40)], dtype=np.float64)
_HAIR = np.array([(22, 18, 16), (45, 32, 24), (80, 55, 35), (120, 85, 50), (185, 150, 95),
                  (150, 70, 35), (150, 150, 150), (60, 48, 40)], dtype=np.float64)
_IRIS = np.array([(60, 38, 24), (90, 60, 35), (70, 100, 140), (80, 110, 80), (40, 30, 25)], dtype=np.float64)


def sample_head(rng: np.random.Generator) -> HeadParams:
    """Draw a random head. Every draw comes from ``rng`` (deterministic for its seed)."""
    u = rng.uniform
    skull = dict(a=u(0.9, 1.02), b_up=u(1.18, 1.32), b_down=u(1.22, 1.42), c_front=u(1.02, 1.14),
                 c_back=u(1.1, 1.25), jaw_taper=u(0.12, 0.3))
    eye_y = u(0.14, 0.22)
    nose_tip = u(-0.3, -0.22)
    mouth_y = nose_tip - u(0.2, 0.26)
    face = dict(
        eye_x=u(0.35, 0.41), eye_w=u(0.14, 0.165), eye_y=eye_y, eye_h=u(0.045, 0.06),
        brow_y=eye_y + u(0.13, 0.17), brow_arch=u(0.015, 0.04), brow_th=u(0.022, 0.04),
        nose_tip=nose_tip, nose_base=u(0.05, 0.08), nose_w=u(0.12, 0.16), nose_h=u(0.2, 0.3),
        mouth_y=mouth_y, mouth_w=u(0.26, 0.33), lip_up=u(0.035, 0.055), lip_low=u(0.045, 0.065),
        mouth_open=float(u(0.0, 0.05) if rng.random() < 0.3 else u(0.0, 0.006)),
        chin=mouth_y - u(0.28, 0.36), jaw_theta=u(1.2, 1.38), jaw_top=eye_y - u(0.02, 0.1),
    )
    skin = _SKIN[rng.integers(len(_SKIN))] * u(0.93, 1.07, 3)
    bald = rng.random() < 0.08
    long_hair = rng.random() < 0.3
    hair_style = dict(
        front=u(0.58, 0.75), side=u(0.15, 0.35), back=u(-1.0, -0.75) if long_hair else u(-0.6, -0.3),
        thickness=0.0 if bald else u(0.04, 0.14), parting=u(-0.4, 0.4),
    )
    hair = _HAIR[rng.integers(len(_HAIR))] * u(0.85, 1.15, 3)
    lip = np.clip(skin * np.array([0.95, 0.62, 0.62]) * u(0.85, 1.05), 0, 255)
    iris = _IRIS[rng.integers(len(_IRIS))] * u(0.8, 1.2, 3)
    clothes = u(20, 235, 3)
    beard = float(u(0.2, 0.6)) if rng.random() < 0.15 else 0.0
    return HeadParams(
        skull={k: float(v) for k, v in skull.items()}, face={k: float(v) for k, v in face.items()},
        skin=_rgb(skin), lip=_rgb(lip), iris=_rgb(iris), hair=_rgb(hair), hair_style={k: float(v) for k, v in hair_style.items()},
        clothes=_rgb(clothes), beard=beard, scene_seed=int(rng.integers(2**31 - 1)),
    )


def _rgb(c: np.ndarray) -> tuple[float, float, float]:
    c = np.clip(c, 0, 255)
    return float(c[0]), float(c[1]), float(c[2])


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _g(x: np.ndarray, s: float) -> np.ndarray:
    return np.exp(-0.5 * (x / s) ** 2)


def hairline(hp: HeadParams, theta: np.ndarray) -> np.ndarray:
    """Latitude of the hairline at longitude ``theta`` (hair above it)."""
    hs = hp.hair_style
    at = np.abs(theta)
    w1 = _smoothstep(0.75, 1.35, at)
    h = hs["front"] * (1 - w1) + hs["side"] * w1
    w2 = _smoothstep(1.75, 2.5, at)
    return h * (1 - w2) + hs["back"] * w2


def hair_mask(hp: HeadParams, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    if hp.hair_style["thickness"] <= 0:
        return np.zeros(np.broadcast(theta, phi).shape)
    return _smoothstep(-0.035, 0.035, phi - hairline(hp, theta))


def radius(hp: HeadParams, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Radial distance of the head surface in direction (θ, φ)."""
    s, f = hp.skull, hp.face
    cp, sp = np.cos(phi), np.sin(phi)
    dx, dy, dz = cp * np.sin(theta), sp, cp * np.cos(theta)
    a = s["a"] * (1 - s["jaw_taper"] * np.clip(-sp, 0, 1) ** 1.5)
    b = np.where(dy > 0, s["b_up"], s["b_down"])
    c = np.where(dz > 0, s["c_front"], s["c_back"])
    r = 1.0 / np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2)
    at = np.abs(theta)
    # nose: a ridge from the bridge (eye level) to the tip, steep underneath
    span = f["eye_y"] - f["nose_tip"]
    t = (f["eye_y"] - phi) / span
    prof = np.where(t < 0, 0.25 * _g(t * span, 0.06), 0.25 + 0.75 * np.clip(t, 0, 1) ** 1.4)
    prof = np.where(t > 1, _g((t - 1) * span, 0.03), prof)
    sig = f["nose_w"] * (0.35 + 0.45 * np.clip(t, 0, 1))
    r = r + f["nose_h"] * prof * np.exp(-0.5 * (theta / sig) ** 2)
    # nostril wings
    base = f["nose_tip"] - f["nose_base"] * 0.6
    r = r + 0.05 * _g(at - f["nose_w"] * 0.8, 0.04) * _g(phi - base, 0.035)
    # brow ridge, eye sockets, eyeballs, cheeks
    r = r + 0.04 * _g(phi - (f["brow_y"] - 0.02), 0.05) * np.exp(-((theta / 0.62) ** 4))
    r = r - 0.06 * _g(at - f["eye_x"], f["eye_w"] * 1.05) * _g(phi - f["eye_y"] - 0.01, 0.065)
    r = r + 0.035 * _g(at - f["eye_x"], f["eye_w"] * 0.6) * _g(phi - f["eye_y"], f["eye_h"] * 1.3)
    r = r + 0.04 * _g(at - f["eye_x"] - 0.06, 0.13) * _g(phi - f["eye_y"] + 0.24, 0.1)
    # lips and chin
    r = r + 0.035 * _g(theta, f["mouth_w"] * 0.75) * _g(phi - f["mouth_y"] - f["lip_up"] * 0.5, 0.035)
    r = r + 0.03 * _g(theta, f["mouth_w"] * 0.65) * _g(phi - f["mouth_y"] + f["lip_low"] * 0.55, 0.035)
    r = r + 0.045 * _g(theta, 0.2) * _g(phi - f["chin"] - 0.1, 0.08)
    # under the chin the surface recedes towards the neck, so the chin is the lowest point of
    # the face and the jaw landmarks lie on the visible contour
    front = np.exp(-((theta / 1.1) ** 4))
    r = r * (1 - 0.3 * _smoothstep(f["chin"] + 0.02, f["chin"] - 0.45, phi) * front)
    # hair volume
    th = hp.hair_style["thickness"]
    if th > 0:
        # the volume ramps up more gently than the colour edge, so the mesh resolves it
        soft = _smoothstep(-0.03, 0.2, phi - hairline(hp, theta))
        r = r + th * soft * _smoothstep(-1.2, -0.6, phi)
    return r


def surface(hp: HeadParams, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Model-space points [..., 3] of the head surface at (θ, φ)."""
    r = radius(hp, theta, phi)
    cp = np.cos(phi)
    return np.stack([r * cp * np.sin(theta), r * np.sin(phi), r * cp * np.cos(theta)], axis=-1)


def landmarks_model(hp: HeadParams) -> np.ndarray:
    """The 68 landmarks in model space, [3, 68] (the ``points`` argument of ``project_3ddfa``)."""
    ang = landmark_angles(hp.face)
    return surface(hp, ang[:, 0], ang[:, 1]).T.copy()


def face_width(hp: HeadParams) -> float:
    """Model-space distance between jaw landmarks 0 and 16 (the face size unit of the scene)."""
    lm = landmarks_model(hp)
    return float(lm[0, 16] - lm[0, 0])


# ----------------------------------------------------------------------------- meshes

@dataclass(frozen=True)
class Mesh:
    verts: np.ndarray  # [N, 3] model space
    normals: np.ndarray  # [N, 3] unit, outward
    uv: np.ndarray  # [N, 2] atlas pixel coordinates (u = column, v = row)
    tris: np.ndarray  # [T, 3] int32, counter-clockwise seen from outside


def grid_mesh(points: np.ndarray, uv: np.ndarray, fallback_normals: np.ndarray | None = None) -> Mesh:
    """Mesh of a parametric grid ``points`` [R, C, 3] whose rows go up (φ) and columns round (θ)
    such that ∂P/∂θ × ∂P/∂φ points outward."""
    rows, cols = points.shape[:2]
    pth = np.gradient(points, axis=1)
    pph = np.gradient(points, axis=0)
    n = np.cross(pth, pph)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    if fallback_normals is not None:
        bad = norm[..., 0] < 1e-9
        n[bad] = fallback_normals[bad]
        norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = n / np.maximum(norm, 1e-12)
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    v00 = (i * cols + j).ravel()
    v01 = v00 + 1
    v10 = v00 + cols
    v11 = v10 + 1
    tris = np.concatenate([np.stack([v00, v01, v11], 1), np.stack([v00, v11, v10], 1)]).astype(np.int32)
    return Mesh(points.reshape(-1, 3), n.reshape(-1, 3), uv.reshape(-1, 2).astype(np.float32), tris)


def _warped(n: int, lo: float, hi: float, centre: float, width: float, gain: float) -> np.ndarray:
    """``n`` samples in [lo, hi], denser (by 1+gain) within ``width`` of ``centre``."""
    x = np.linspace(lo, hi, 4096)
    dens = 1 + gain * np.exp(-0.5 * ((x - centre) / width) ** 2)
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
    cdf /= cdf[-1]
    return np.interp(np.linspace(0, 1, n), cdf, x)


TEX_W, TEX_H = 768, 384  # head texture (longitude × latitude)
SWATCH_H = 16  # solid colour swatches appended below the head texture
SWATCHES = ("ear", "neck", "clothes", "inner_ear")
_THETAS = _warped(113, -np.pi, np.pi, 0.0, 0.9, 3.0)
_PHIS = _warped(81, -np.pi / 2, np.pi / 2, -0.1, 0.6, 2.5)


def tex_uv(theta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head texture pixel coordinates of (θ, φ)."""
    return (theta + np.pi) / (2 * np.pi) * (TEX_W - 1), (np.pi / 2 - phi) / np.pi * (TEX_H - 1)


def swatch_uv(name: str) -> tuple[float, float]:
    k = SWATCHES.index(name)
    return k * 32 + 16.0, TEX_H + SWATCH_H / 2  # centre of a 32-px wide swatch


def head_mesh(hp: HeadParams) -> Mesh:
    th, ph = np.meshgrid(_THETAS, _PHIS)
    pts = surface(hp, th, ph)
    u, v = tex_uv(th, ph)
    radial = np.stack([np.cos(ph) * np.sin(th), np.sin(ph), np.cos(ph) * np.cos(th)], -1)
    return grid_mesh(pts, np.stack([u, v], -1), radial)


def ellipsoid_mesh(centre: np.ndarray, radii: np.ndarray, uv: tuple[float, float], n_th: int = 20,
                   n_ph: int = 14, rot: np.ndarray | None = None) -> Mesh:
    th, ph = np.meshgrid(np.linspace(-np.pi, np.pi, n_th), np.linspace(-np.pi / 2, np.pi / 2, n_ph))
    d = np.stack([np.cos(ph) * np.sin(th), np.sin(ph), np.cos(ph) * np.cos(th)], -1)
    p = d * radii
    if rot is not None:
        p = p @ rot.T
        d = d @ rot.T
    p = p + centre
    uvs = np.broadcast_to(np.array(uv, dtype=np.float32), th.shape + (2,))
    return grid_mesh(p, uvs, d)


def cylinder_mesh(centre_xz: tuple[float, float], radius_: float, y0: float, y1: float,
                  uv: tuple[float, float], n_th: int = 24, n_y: int = 6) -> Mesh:
    th, y = np.meshgrid(np.linspace(-np.pi, np.pi, n_th), np.linspace(y0, y1, n_y))
    p = np.stack([centre_xz[0] + radius_ * np.sin(th), y, centre_xz[1] + radius_ * np.cos(th)], -1)
    uvs = np.broadcast_to(np.array(uv, dtype=np.float32), th.shape + (2,))
    return grid_mesh(p, uvs)


def body_meshes(hp: HeadParams) -> tuple[list[Mesh], list[Mesh]]:
    """(parts that turn with the head: ears and neck, parts that turn less: the torso)."""
    s, f = hp.skull, hp.face
    rigid = []
    ear_y = f["eye_y"] - 0.12
    for side in (-1.0, 1.0):
        tilt = np.radians(12)
        rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
        yaw_out = side * np.radians(18)
        ry = np.array([[np.cos(yaw_out), 0, np.sin(yaw_out)], [0, 1, 0], [-np.sin(yaw_out), 0, np.cos(yaw_out)]])
        rigid.append(ellipsoid_mesh(np.array([side * (s["a"] * 0.93 + 0.05), ear_y, -0.12]),
                                    np.array([0.07, 0.27, 0.16]), swatch_uv("ear"), rot=ry @ rot))
    rigid.append(cylinder_mesh((0.0, -0.2), 0.52 * s["a"], -2.3, -0.4, swatch_uv("neck")))
    torso = [ellipsoid_mesh(np.array([0.0, -2.75, -0.35]), np.array([2.1, 0.95, 1.0]), swatch_uv("clothes"),
                            n_th=28, n_ph=16)]
    return rigid, torso
