"""Rendering a head into an image: placement with the 3DDFA projection, shading, backgrounds,
occluders, and the pose distribution.

Projection is exactly docs/design.md §3 (:func:`pipeline.core.angles.project_3ddfa`): a model point ``v``
lands at ``s·R·v + t`` with ``R = rotation_from_degrees(pitch, yaw, roll)`` and image row
``H − 1 − y'``. ``s`` is chosen so that the face width (jaw landmark 0 to 16 at zero pose) is
``face_size`` pixels, and ``t`` so that the centre of the landmark box lands on ``center``.
Shading is Lambertian (``albedo · (ambient + diffuse · max(0, n·l))``) with a random light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.core.angles import THETA, rotation_from_degrees

from .head import HeadParams, Mesh, body_meshes, head_mesh, landmarks_model, sample_head
from .raster import rasterize
from .texture import paint_texture

Pose = tuple[float, float, float]


@dataclass(frozen=True)
class Light:
    direction: tuple[float, float, float]  # towards the light, camera frame (y up, z to viewer)
    ambient: float
    diffuse: float
    colour: tuple[float, float, float]


def sample_light(rng: np.random.Generator) -> Light:
    d = np.array([rng.uniform(-1, 1), rng.uniform(-0.4, 1.0), rng.uniform(0.5, 1.3)])
    d /= np.linalg.norm(d)
    amb = rng.uniform(0.3, 0.5)
    return Light((float(d[0]), float(d[1]), float(d[2])), float(amb), float(rng.uniform(0.55, 0.8)),
                 tuple(float(c) for c in rng.uniform(0.9, 1.08, 3)))  # type: ignore[arg-type]


FRONT_LIGHT = Light((0.3, 0.35, 0.89), 0.4, 0.7, (1.0, 1.0, 1.0))


def sample_pose(rng: np.random.Generator) -> Pose:
    """A pose spread like 300W-LP: yaw wide (to ±99, biased to frontal), pitch/roll narrower.

    yaw: half the draws uniform in [−90, 90], the rest normal(0, 30), a few uniform to ±99;
    pitch: 35 % uniform in [−45, 45], the rest normal(0, 13); roll: 35 % uniform in [−30, 30],
    the rest normal(0, 12); all clipped to ±THETA (99°).

    Why pitch and roll have a uniform share: the network's expected angle (eq. 2)
    is pulled toward the mean of the training labels, the more so the narrower they are against
    the angle's error. From normal(0, 13) / normal(0, 12) alone the teacher's predicted-vs-true
    slope for pitch was 0.65–0.72 over seeds, while yaw, half uniform, reached 0.92; widening
    pitch alone cost roll (0.66–0.83), so both get a share (BENCHMARKS.md).
    """
    k = rng.random()
    if k < 0.5:
        yaw = rng.uniform(-90, 90)
    elif k < 0.97:
        yaw = rng.normal(0, 30)
    else:
        yaw = rng.uniform(-THETA, THETA)
    pitch = rng.uniform(-45, 45) if rng.random() < 0.35 else rng.normal(0, 13)
    roll = rng.uniform(-30, 30) if rng.random() < 0.35 else rng.normal(0, 12)
    return tuple(float(np.clip(a, -THETA, THETA)) for a in (pitch, yaw, roll))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- backgrounds

def background(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """Random RGB uint8 background: gradient or coloured noise, often with blurred clutter."""
    h, w = (size, size) if isinstance(size, int) else size
    kind = rng.integers(3)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    sh, sw = h // 4 + 1, w // 4 + 1  # built at quarter resolution, then upsampled
    if kind == 0:  # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        t = (np.cos(a) * xx / sw + np.sin(a) * yy / sh)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        small = c0 * (1 - t[..., None]) + c1 * t[..., None]
    else:  # coloured low-frequency noise
        cells = int(rng.integers(2, 9))
        n = rng.random((cells, cells, 3)).astype(np.float32)
        n = cv2.resize(n, (sw, sh), interpolation=cv2.INTER_CUBIC)
        small = c0 + (c1 - c0) * np.clip(n, 0, 1)
        if kind == 2:
            small = small + rng.normal(0, rng.uniform(3, 15), (sh, sw, 1))
    small = np.clip(small, 0, 255).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR if kind < 2 else cv2.INTER_NEAREST)
    if rng.random() < 0.7:  # clutter
        for _ in range(int(rng.integers(4, 20))):
            col = tuple(int(c) for c in rng.integers(0, 256, 3))
            x, y = (int(v) for v in rng.integers(0, [w, h]))
            s = int(rng.integers(max(4, w // 40), max(5, w // 4)))
            shape = rng.integers(3)
            if shape == 0:
                cv2.rectangle(img, (x, y), (x + s, y + int(rng.integers(4, s + 5))), col, -1)
            elif shape == 1:
                cv2.circle(img, (x, y), s // 2, col, -1, cv2.LINE_AA)
            else:
                cv2.line(img, (x, y), tuple(int(v) for v in rng.integers(0, [w, h])), col,
                         int(rng.integers(1, 6)), cv2.LINE_AA)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 3.0))
    return img


def draw_occluder(img: np.ndarray, rng: np.random.Generator, box: tuple[float, float, float, float]) -> None:
    """Draw a random object (bar, blob, polygon) over part of the face box, in place."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    col = tuple(int(c) for c in rng.integers(0, 256, 3))
    cx = x1 + bw * rng.uniform(0.0, 1.0)
    cy = y1 + bh * rng.uniform(0.3, 1.1)
    kind = rng.integers(3)
    overlay = img.copy()
    if kind == 0:
        ang = rng.uniform(0, np.pi)
        ln = bw * rng.uniform(0.5, 1.2)
        d = np.array([np.cos(ang), np.sin(ang)]) * ln / 2
        cv2.line(overlay, (int(cx - d[0]), int(cy - d[1])), (int(cx + d[0]), int(cy + d[1])), col,
                 max(2, int(bw * rng.uniform(0.06, 0.15))), cv2.LINE_AA)
    elif kind == 1:
        axes = (max(2, int(bw * rng.uniform(0.1, 0.25))), max(2, int(bh * rng.uniform(0.1, 0.2))))
        cv2.ellipse(overlay, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
    else:
        n = int(rng.integers(3, 7))
        r = bw * rng.uniform(0.1, 0.22)
        a = np.sort(rng.uniform(0, 2 * np.pi, n))
        pts = np.stack([cx + r * np.cos(a) * rng.uniform(0.6, 1.2, n), cy + r * np.sin(a) * rng.uniform(0.6, 1.2, n)], 1)
        cv2.fillPoly(overlay, [pts.astype(np.int32)], col, cv2.LINE_AA)
    alpha = 1.0 if rng.random() < 0.7 else rng.uniform(0.5, 0.9)
    cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, dst=img)


# ----------------------------------------------------------------------------- rendering

class Placed(NamedTuple):
    """Labels of a head drawn on a canvas (3DDFA convention, image coordinates)."""

    pt2d: np.ndarray  # [2, 68] image x, y of the landmarks
    pt3d_68: np.ndarray  # [3, 68] image x, y and depth z' = s·(R·v)_z + tz
    pose_para: np.ndarray  # [7] pitch, yaw, roll (radians), tx, ty, tz, scale
    box: tuple[float, float, float, float]  # landmark box x1, y1, x2, y2
    mask: np.ndarray  # bool [H, W], pixels covered by the head/body


def placement(hp: HeadParams, pose: Pose, center: tuple[float, float], face_size: float, height: int,
              lm: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """3DDFA scale ``s`` and translation ``t`` that put the landmark-box centre on ``center``."""
    lm = landmarks_model(hp) if lm is None else lm
    r = rotation_from_degrees(*pose)
    s = face_size / float(lm[0, 16] - lm[0, 0])
    p = s * (r @ lm)
    mx = (p[0].min() + p[0].max()) / 2
    my = (p[1].min() + p[1].max()) / 2
    return s, np.array([center[0] - mx, height - 1 - center[1] - my, 0.0])


def _torso_pose(pose: Pose) -> Pose:
    return 0.0, pose[1] * 0.3, pose[2] * 0.3


def render_onto(
    canvas: np.ndarray, head: HeadParams | np.random.Generator, pose: Pose,
    center: tuple[float, float], face_size: float, light: Light | None = None, body: bool = True,
) -> Placed:
    """Draw a head at ``pose`` (degrees) onto the RGB uint8 ``canvas`` in place.

    ``center`` is where the landmark-box centre lands (x, y pixels), ``face_size`` the face
    width (jaw landmarks 0-16 at zero pose) in pixels. ``head`` is a :class:`HeadParams` or a
    generator to draw one from. Returns the labels (:class:`Placed`). Several heads can be
    drawn on one canvas (later ones in front).
    """
    hp = head if isinstance(head, HeadParams) else sample_head(head)
    light = light or sample_light(np.random.default_rng(hp.scene_seed))
    h, w = canvas.shape[:2]
    lm = landmarks_model(hp)
    s, t = placement(hp, pose, center, face_size, h, lm)
    r_head = rotation_from_degrees(*pose)
    rigid, torso = body_meshes(hp)
    parts: list[tuple[Mesh, np.ndarray, np.ndarray]] = [(head_mesh(hp), r_head, t)]
    if body:
        parts += [(m, r_head, t) for m in rigid]
        # the torso hangs under the neck base and turns less than the head
        neck_base = np.array([0.0, -2.0, -0.2])
        r_t = rotation_from_degrees(*_torso_pose(pose))
        t_t = t + s * (r_head @ neck_base - r_t @ neck_base)
        parts += [(m, r_t, t_t) for m in torso]
    verts, normals, uvs, tris = [], [], [], []
    off = 0
    for mesh, r, tt in parts:
        v = s * (mesh.verts @ r.T) + tt
        verts.append(v)
        normals.append(mesh.normals @ r.T)
        uvs.append(mesh.uv)
        tris.append(mesh.tris + off)
        off += len(v)
    v = np.concatenate(verts).astype(np.float32)
    nrm = np.concatenate(normals).astype(np.float32)
    uv = np.concatenate(uvs).astype(np.float32)
    tri = np.concatenate(tris)
    xy = np.stack([v[:, 0], (h - 1) - v[:, 1]], 1)
    frags = rasterize(xy, v[:, 2], tri, h, w)
    att = frags.interpolate(np.concatenate([nrm, uv], 1), tri)
    n, fuv = att[:, :3], att[:, 3:]
    atlas = paint_texture(hp)
    albedo = _lookup(atlas, fuv)
    ldir = np.asarray(light.direction, np.float32)
    lam = np.maximum((n @ ldir) / np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-6), 0.0)
    inten = light.ambient + light.diffuse * lam
    col = albedo * inten[:, None] * np.asarray(light.colour, np.float32)
    canvas[frags.ys, frags.xs] = np.clip(col, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[frags.ys, frags.xs] = True
    pr = s * (r_head @ lm) + t[:, None]
    pt2d = np.stack([pr[0], (h - 1) - pr[1]])
    pt3d = np.stack([pr[0], (h - 1) - pr[1], pr[2]])
    pose_para = np.array([*np.radians(pose), t[0], t[1], t[2], s], dtype=np.float64)
    box = (float(pt2d[0].min()), float(pt2d[1].min()), float(pt2d[0].max()), float(pt2d[1].max()))
    return Placed(pt2d, pt3d, pose_para, box, mask)


_NOISE_SIZE = 1024
_NOISE: np.ndarray | None = None


def _noise_field(size: int) -> np.ndarray:
    """A fixed unit-variance pixel-noise field (windows at random offsets give image noise)."""
    global _NOISE
    n = max(_NOISE_SIZE, size)
    if _NOISE is None or _NOISE.shape[0] < n:
        _NOISE = np.random.default_rng(7).standard_normal((n, n, 3)).astype(np.float32)
    return _NOISE


def _lookup(atlas: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup of K points (cv2.remap on a [K/1024, 1024] map)."""
    k = len(uv)
    cols = 1024
    rows = -(-k // cols) or 1
    m = np.zeros((rows * cols, 2), np.float32)
    m[:k] = uv
    m = m.reshape(rows, cols, 2)
    out = cv2.remap(atlas, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, atlas.shape[2])[:k]


class RenderedHead(NamedTuple):
    rgb: np.ndarray  # [size, size, 3] uint8 RGB
    pt2d: np.ndarray  # [2, 68] float64 image coordinates
    pt3d_68: np.ndarray  # [3, 68] image x, y and depth
    pose_para: np.ndarray  # [7] 300W-LP Pose_Para (radians, t, s)


# 9 parameters, kept flat: this is the one-call entry point (tests, ad-hoc renders) with pitch, yaw, roll
# positional like every pose call; the record form already exists as generate.SampleSpec
# (render_sample). The four options are keyword-only and independent of one another.
def render_head(
    head: HeadParams | np.random.Generator, pitch: float, yaw: float, roll: float, size: int, *,
    center: tuple[float, float] | None = None, face_size: float | None = None,
    occluder: bool = False, rng: np.random.Generator | None = None,
) -> RenderedHead:
    """Render one head at (pitch, yaw, roll) degrees on a random background, ``size``×``size``.

    ``head``: a :class:`HeadParams` (see :func:`sample_head`) or a generator to draw one from.
    ``center`` (default the image centre) and ``face_size`` (default 0.45·size) place the face
    (see :func:`render_onto`). The background, light and noise come from ``rng`` if given, else
    from the head's own ``scene_seed``, so ``render_head(hp, …)`` is a pure function.
    Model-space landmarks: :func:`pipeline.synth.head.landmarks_model` (``hp``); with the returned
    ``pose_para`` they reproduce ``pt2d`` through ``project_3ddfa``.
    """
    hp = head if isinstance(head, HeadParams) else sample_head(head)
    rng = rng if rng is not None else np.random.default_rng(hp.scene_seed + 1)
    img = background(rng, size)
    c = center if center is not None else ((size - 1) / 2, (size - 1) / 2)
    fs = face_size if face_size is not None else 0.45 * size
    placed = render_onto(img, hp, (pitch, yaw, roll), c, fs, light=sample_light(rng))
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9))
    if occluder:
        draw_occluder(img, rng, placed.box)
    gain, bias, amp = rng.uniform(0.85, 1.15), rng.uniform(-15, 15), rng.uniform(1, 5)
    oy, ox = (int(v) for v in rng.integers(0, _NOISE_SIZE - size + 1, 2)) if size <= _NOISE_SIZE else (0, 0)
    noise = _noise_field(size)[oy:oy + size, ox:ox + size]
    img = img.astype(np.float32)
    cv2.scaleAdd(noise, amp, img * gain + bias, dst=img)
    img = np.clip(img, 0, 255, out=img).astype(np.uint8)
    return RenderedHead(img, placed.pt2d, placed.pt3d_68, placed.pose_para)
