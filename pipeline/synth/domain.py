"""The synthesizer's domains (``synthesize.domain``): how the faces look, with the same labels,
pose distribution and conventions.

- ``wild`` (the default): 300W-LP-like rendered faces in the wild — a new random identity,
  background, light, face size and sensor gain per image, occluders.
- ``lab``: a BIWI-like lab video look, the shift the paper blames for its weakest result
  (§6.1, §6.4): :data:`LAB_IDENTITIES` people with consistent appearance, one plain wall, one
  fixed warm key light from the left, a fixed camera distance (face width 40–44 % of the image,
  centred within 2 %), no occluders, and a cheaper camera — the image is captured at a third of
  its resolution and upsampled, with per-pixel sensor noise (σ = :data:`LAB_NOISE`).

A domain only changes appearance: every image still draws its pose with
:func:`pipeline.synth.scene.sample_pose`, and its labels are written exactly as in ``wild``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .head import HeadParams, sample_head
from .scene import Light, RenderedHead, render_onto

DOMAINS = ("wild", "lab")
LAB_IDENTITIES = 12  # people in the lab set (BIWI has 20 sessions of 20 people; CMU/lab sets have few)
LAB_LIGHT = Light((-0.6, 0.3, 0.74), 0.28, 0.85, (1.0, 0.93, 0.82))
LAB_WALL = (150.0, 146.0, 138.0)  # RGB of the plain background
LAB_DOWNSCALE = 3  # the camera's resolution: 1/3 of the image side
LAB_NOISE = 6.0  # sensor noise, grey levels (σ)


def check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"synthesize.domain {domain!r} is unknown; choose one of {', '.join(DOMAINS)}")
    return domain


def lab_head(seed: int, index: int) -> HeadParams:
    """Identity ``index % LAB_IDENTITIES`` of the lab set: the same face in every image of it."""
    return sample_head(np.random.default_rng([int(seed), 7, index % LAB_IDENTITIES]))


def lab_placement(rng: np.random.Generator, size: int) -> tuple[tuple[float, float], float]:
    """(center, face width) of a lab image: a fixed camera distance, the subject centred."""
    face_size = float(rng.uniform(0.40, 0.44) * size)
    center = (float((size - 1) / 2 + rng.uniform(-0.02, 0.02) * size),
              float((size - 1) / 2 + rng.uniform(-0.02, 0.02) * size))
    return center, face_size


def lab_wall(rng: np.random.Generator, size: int) -> np.ndarray:
    """The plain wall: one colour, a soft vertical light fall-off, a little exposure drift."""
    t = np.linspace(1.06, 0.9, size, dtype=np.float32)[:, None, None]
    img = np.asarray(LAB_WALL, np.float32)[None, None] * t * float(rng.uniform(0.95, 1.05))
    return np.clip(np.broadcast_to(img, (size, size, 3)), 0, 255).astype(np.uint8)


def render_lab(head: HeadParams, pose: tuple[float, float, float], size: int, center: tuple[float, float],
               face_size: float, rng: np.random.Generator) -> RenderedHead:
    """One lab image: the wall, the head under the lab light, then the lab camera."""
    img = lab_wall(rng, size)
    placed = render_onto(img, head, pose, center, face_size, light=LAB_LIGHT)
    small = max(16, size // LAB_DOWNSCALE)
    img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                     interpolation=cv2.INTER_LINEAR)
    noisy = img.astype(np.float32) + rng.normal(0.0, LAB_NOISE, img.shape).astype(np.float32)
    return RenderedHead(np.clip(noisy, 0, 255).astype(np.uint8), placed.pt2d, placed.pt3d_68, placed.pose_para)


__all__ = ["DOMAINS", "LAB_IDENTITIES", "check_domain", "lab_head", "lab_placement", "lab_wall", "render_lab"]
