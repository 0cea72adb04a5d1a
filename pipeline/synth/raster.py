"""A small vectorised triangle rasteriser with a z-buffer, in numpy.

Triangles are small (a few pixels), so every triangle enumerates the pixel centres of its
bounding box at once (``np.repeat`` over all triangles), keeps those inside by barycentric
test, and the z-buffer is resolved with ``np.maximum.at``: per pixel the fragment with the largest
depth (closest to the camera, 3DDFA convention: +z points at the viewer) wins. The result is
a list of visible fragments (pixel, triangle, barycentrics) from which callers interpolate any
per-vertex attribute. Deterministic: ties are broken by fragment order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fragments:
    """Visible fragments, one per covered pixel."""

    ys: np.ndarray  # int32 [K] pixel rows
    xs: np.ndarray  # int32 [K] pixel columns
    tri: np.ndarray  # int32 [K] triangle index (into the triangles passed in)
    bary: np.ndarray  # float32 [K, 3] barycentric weights of the triangle's vertices
    depth: np.ndarray  # float32 [K] interpolated depth

    def interpolate(self, attr: np.ndarray, tris: np.ndarray) -> np.ndarray:
        """Per-fragment value of a per-vertex attribute ``attr`` [N, C] → [K, C]."""
        t = tris[self.tri]
        b = self.bary
        return attr[t[:, 0]] * b[:, 0:1] + attr[t[:, 1]] * b[:, 1:2] + attr[t[:, 2]] * b[:, 2:3]


def _no_fragments() -> Fragments:
    return Fragments(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32),
                     np.zeros((0, 3), np.float32), np.zeros(0, np.float32))


def _z_test(pix: np.ndarray, z: np.ndarray, n_pixels: int) -> np.ndarray:
    """Indices of the fragments that win the z-buffer: per pixel (``pix``, flat index) the one
    with the largest depth ``z``, in increasing pixel order."""
    zbuf = np.full(n_pixels, -np.inf, dtype=np.float32)
    np.maximum.at(zbuf, pix, z)
    win = np.nonzero(z >= zbuf[pix])[0]
    owner = np.full(n_pixels, -1, dtype=np.int64)
    owner[pix[win]] = win  # among exact depth ties the later fragment wins (deterministic)
    return owner[owner >= 0]


def _triangle_boxes(xy: np.ndarray, tris: np.ndarray, height: int, width: int, cull_back: bool) -> tuple:
    """Per triangle: its corners a, b, c, signed area, clipped pixel bbox (x0, y0, w, h), and the
    indices of the triangles to draw (facing the viewer with ``cull_back``, non-empty bbox)."""
    a, b, c = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    mins = np.minimum(np.minimum(a, b), c)
    maxs = np.maximum(np.maximum(a, b), c)
    x0 = np.maximum(np.ceil(mins[:, 0]), 0).astype(np.int32)
    y0 = np.maximum(np.ceil(mins[:, 1]), 0).astype(np.int32)
    w = np.minimum(np.floor(maxs[:, 0]), width - 1).astype(np.int32) - x0 + 1
    h = np.minimum(np.floor(maxs[:, 1]), height - 1).astype(np.int32) - y0 + 1
    keep = (area < -1e-6) if cull_back else (np.abs(area) > 1e-6)
    keep &= (w > 0) & (h > 0)
    return a, b, c, area, x0, y0, w, h, np.nonzero(keep)[0].astype(np.int32)


def rasterize(
    xy: np.ndarray, depth: np.ndarray, tris: np.ndarray, height: int, width: int,
    cull_back: bool = True,
) -> Fragments:
    """Rasterise triangles given image coordinates ``xy`` [N, 2] (x right, y down).

    ``depth`` [N]: larger is closer. With ``cull_back`` only triangles whose vertices appear
    clockwise in the image (counter-clockwise in the y-up camera frame, i.e. outward normal
    towards the viewer for counter-clockwise outward winding) are drawn.
    """
    xy = np.asarray(xy, dtype=np.float32)
    depth = np.asarray(depth, dtype=np.float32)
    tris = np.asarray(tris, dtype=np.int32)
    a, b, c, area, x0, y0, w, h, live = _triangle_boxes(xy, tris, height, width, cull_back)
    if live.size == 0:
        return _no_fragments()
    # barycentrics and depth are affine in the pixel position: per triangle, their value at the
    # bbox corner (x0, y0) and their steps along x and y; fragments then only gather 1-D arrays
    a, b, c, area, x0, y0, w = a[live], b[live], c[live], area[live], x0[live], y0[live], w[live]
    n = w * h[live]
    inv = 1.0 / area
    a0x, a0y = (b[:, 1] - c[:, 1]) * inv, (c[:, 0] - b[:, 0]) * inv  # d(w0)/dx, d(w0)/dy
    a1x, a1y = (c[:, 1] - a[:, 1]) * inv, (a[:, 0] - c[:, 0]) * inv
    dx, dy = x0.astype(np.float32) - a[:, 0], y0.astype(np.float32) - a[:, 1]
    w0o = 1.0 + a0x * dx + a0y * dy
    w1o = a1x * dx + a1y * dy
    t = tris[live]
    za, zb, zc = depth[t[:, 0]], depth[t[:, 1]], depth[t[:, 2]]
    zx = a0x * (za - zc) + a1x * (zb - zc)
    zy = a0y * (za - zc) + a1y * (zb - zc)
    zo = za + zx * dx + zy * dy
    total = int(n.sum())
    k = np.repeat(np.arange(live.size, dtype=np.int32), n)
    start = np.repeat(np.cumsum(n) - n, n)
    off = np.arange(total, dtype=np.int32) - start
    ww = w[k]
    ly = off // ww
    lx = (off - ly * ww).astype(np.float32)
    lyf = ly.astype(np.float32)
    w0 = w0o[k] + a0x[k] * lx + a0y[k] * lyf
    w1 = w1o[k] + a1x[k] * lx + a1y[k] * lyf
    w2 = 1.0 - w0 - w1
    eps = -1e-4
    inside = np.nonzero((w0 >= eps) & (w1 >= eps) & (w2 >= eps))[0]
    if inside.size == 0:
        return _no_fragments()
    k, w0, w1, w2 = k[inside], w0[inside], w1[inside], w2[inside]
    z = (zo[k] + zx[k] * lx[inside] + zy[k] * lyf[inside]).astype(np.float32)
    px = x0[k] + lx[inside].astype(np.int32)
    py = y0[k] + ly[inside]
    idx = live[k]
    pix = py * width + px
    sel = _z_test(pix, z, height * width)
    bary = np.stack([w0[sel], w1[sel], w2[sel]], axis=1).astype(np.float32)
    return Fragments(py[sel].astype(np.int32), px[sel].astype(np.int32), idx[sel].astype(np.int32),
                     bary, z[sel].astype(np.float32))
