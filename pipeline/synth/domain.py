"""The synthesizer's domains (``synthesize.domain``): how the faces look, with the same labels,
pose distribution and conventions.

- ``wild`` (the default): 300W-LP-like rendered faces in the wild — a new random identity,
  background, light, face size and sensor gain per image, occluders.
- ``lab``: a BIWI-like lab video look, the shift the paper blames for its weakest result
  (§6.1, §6.4): :data:`LAB_IDENTITIES` people with consistent appearance, one plain wall, one
  fixed warm key light from the left, a fixed camera distance (face width 40–44 % of the image,
  centred within 2 %), no occluders, and a cheaper camera — the image is captured at a third of
  its resolution and upsampled, with per-pixel sensor noise (σ = :data:`LAB_NOISE`).
- ``car``: an in-car driver-monitoring look, a harsher shift: an infrared camera (grayscale),
  :data:`CAR_IDENTITIES` drivers, a dark cabin with a bright side window, one strong IR
  illuminator from the side with little ambient light, motion blur, a hand near the face in
  :data:`CAR_HAND_P` of the images and dark glasses in :data:`CAR_GLASSES_P`, at half
  resolution with sensor noise (σ = :data:`CAR_NOISE`).

A domain only changes appearance: every image still draws its pose with
:func:`pipeline.synth.scene.sample_pose`, and its labels are written exactly as in ``wild``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .head import HeadParams, sample_head
from .scene import Light, RenderedHead, render_onto

DOMAINS = ("wild", "lab", "car")
LAB_IDENTITIES = 12  # people in the lab set (BIWI has 20 sessions of 20 people; CMU/lab sets have few)
LAB_LIGHT = Light((-0.6, 0.3, 0.74), 0.28, 0.85, (1.0, 0.93, 0.82))
LAB_WALL = (150.0, 146.0, 138.0)  # RGB of the plain background
LAB_DOWNSCALE = 3  # the camera's resolution: 1/3 of the image side
LAB_NOISE = 6.0  # sensor noise, grey levels (σ)
CAR_IDENTITIES = 8  # drivers of the car set
CAR_LIGHT = Light((0.82, 0.12, 0.56), 0.1, 1.15, (1.0, 1.0, 1.0))  # the IR illuminator, right of the camera
CAR_HAND_P = 0.35  # share of images with a hand near the face
CAR_GLASSES_P = 0.3  # share of images with dark glasses
CAR_BLUR = (3, 13)  # motion-blur length range, pixels at 450 px
CAR_DOWNSCALE = 2
CAR_NOISE = 5.0


def check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"synthesize.domain {domain!r} is unknown; choose one of {', '.join(DOMAINS)}")
    return domain


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


def car_cabin(rng: np.random.Generator, size: int) -> np.ndarray:
    """The dark cabin: a grey-black gradient, a bright side window at the left, a headrest."""
    y = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    img = np.broadcast_to((28.0 + 22.0 * y) * float(rng.uniform(0.8, 1.2)), (size, size)).copy()
    x0 = int(rng.uniform(0.0, 0.12) * size)
    img[int(0.08 * size):int(0.5 * size), x0:x0 + int(rng.uniform(0.15, 0.25) * size)] = float(rng.uniform(150, 220))
    cv2.ellipse(img, (size // 2, int(0.42 * size)), (int(0.3 * size), int(0.36 * size)), 0, 0, 360,
                float(rng.uniform(40, 60)), -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _hand(img: np.ndarray, rng: np.random.Generator, box: tuple[float, float, float, float]) -> None:
    """A hand near the face: a palm and four fingers, bright under IR, over the lower face or cheek."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    cx, cy = x1 + bw * float(rng.uniform(0.0, 1.0)), y1 + bh * float(rng.uniform(0.55, 1.15))
    tone = float(rng.uniform(150, 210))
    palm = (max(2, int(bw * 0.22)), max(2, int(bh * 0.26)))
    ang = float(rng.uniform(-40, 40))
    cv2.ellipse(img, (int(cx), int(cy)), palm, ang, 0, 360, (tone,) * 3, -1, cv2.LINE_AA)
    up = np.radians(ang - 90)
    for k in range(4):
        off = (k - 1.5) * palm[0] * 0.5
        bx = cx + off * np.cos(np.radians(ang))
        by = cy + off * np.sin(np.radians(ang))
        ln = palm[1] * float(rng.uniform(1.2, 1.7))
        cv2.line(img, (int(bx), int(by)), (int(bx + ln * np.cos(up)), int(by + ln * np.sin(up))),
                 (tone * 0.95,) * 3, max(2, int(bw * 0.07)), cv2.LINE_AA)


def _glasses(img: np.ndarray, pt2d: np.ndarray) -> None:
    """Dark glasses over the two eyes (landmarks 36-41, 42-47) and a bridge between them."""
    eyes = [pt2d[:, 36:42], pt2d[:, 42:48]]
    centres = [e.mean(1) for e in eyes]
    for e, c in zip(eyes, centres):
        w = max(3.0, float(e[0].max() - e[0].min()))
        cv2.ellipse(img, (int(c[0]), int(c[1])), (int(w * 0.85), int(w * 0.6)), 0, 0, 360, (18, 18, 18), -1,
                    cv2.LINE_AA)
    cv2.line(img, tuple(int(v) for v in centres[0]), tuple(int(v) for v in centres[1]), (18, 18, 18),
             max(1, int(np.linalg.norm(centres[0] - centres[1]) * 0.08)), cv2.LINE_AA)


def render_car(head: HeadParams, pose: tuple[float, float, float], size: int, center: tuple[float, float],
               face_size: float, rng: np.random.Generator) -> RenderedHead:
    """One car image: the cabin, the driver under the IR light, glasses / a hand, then the IR camera
    (grayscale, motion blur, half resolution, noise)."""
    img = car_cabin(rng, size)
    placed = render_onto(img, head, pose, center, face_size, light=CAR_LIGHT)
    if rng.random() < CAR_GLASSES_P:
        _glasses(img, placed.pt2d)
    if rng.random() < CAR_HAND_P:
        _hand(img, rng, placed.box)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    n = max(3, int(round(float(rng.uniform(*CAR_BLUR)) * size / 450)))
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0 / n
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (n, n))
    grey = cv2.filter2D(grey, -1, kernel / max(float(kernel.sum()), 1e-6))
    small = max(16, size // CAR_DOWNSCALE)
    grey = cv2.resize(cv2.resize(grey, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                      interpolation=cv2.INTER_LINEAR)
    grey += rng.normal(0.0, CAR_NOISE, grey.shape).astype(np.float32)
    out = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return RenderedHead(out, placed.pt2d, placed.pt3d_68, placed.pose_para)


@dataclass(frozen=True)
class Look:
    """A domain of a fixed set of people under a fixed camera: who is in image ``index``, where the
    camera puts the face, and how the image is rendered."""

    identities: int  # image ``index`` shows person ``index % identities``
    salt: int  # keeps each set's people apart from another set's
    width: tuple[float, float]  # face width, share of the image side (the camera distance)
    dx: tuple[float, float]  # face centre offset from the image centre, share of the side
    dy: tuple[float, float]
    render: Callable[..., RenderedHead]  # (head, pose, size, center, face width, rng)

    def head(self, seed: int, index: int) -> HeadParams:
        """The same face in every image of one person."""
        return sample_head(np.random.default_rng([int(seed), self.salt, index % self.identities]))

    def placement(self, rng: np.random.Generator, size: int) -> tuple[tuple[float, float], float]:
        """(center, face width) of one image."""
        face_size = float(rng.uniform(*self.width) * size)
        center = (float((size - 1) / 2 + rng.uniform(*self.dx) * size),
                  float((size - 1) / 2 + rng.uniform(*self.dy) * size))
        return center, face_size


# the lab: a fixed camera distance, the subject centred; the car: the driver's seat, the head moving a little
LOOKS = {
    "lab": Look(LAB_IDENTITIES, 7, (0.40, 0.44), (-0.02, 0.02), (-0.02, 0.02), render_lab),
    "car": Look(CAR_IDENTITIES, 11, (0.32, 0.42), (-0.08, 0.08), (-0.06, 0.04), render_car),
}

__all__ = ["CAR_IDENTITIES", "DOMAINS", "LAB_IDENTITIES", "LOOKS", "Look", "check_domain", "lab_wall", "render_car",
           "render_lab"]
