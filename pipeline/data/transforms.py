"""Pose-correct augmentation (docs/design.md §9, paper section 4.3).

Two parts, applied in this order:

1. **Geometric** (changes the pose): horizontal flip (p = 0.5) then an in-plane rotation
   uniform in [-15°, 15°], done together with the box crop as ONE affine warp
   (:func:`pipeline.core.geometry.crop`); the target angles are corrected exactly through rotation
   matrices (:meth:`pipeline.core.views.View.pose`, the Euler triple nearest the label, so
   90° < |yaw| ≤ 99° stays continuous). A rotation that would move the label out of [-99, 99]
   is dropped for that sample (:func:`pipeline.core.views.fit_view`; image and target agree).
   A view is a plain :class:`View` value, so the teacher-label job and the student replay it
   from its explicit parameters.
2. **Photometric** (keeps the pose): the albumentations list of docs/design.md §9, built with
   ``strict=True`` so a misspelt (e.g. albumentations 1.x) argument is an error.

Randomness comes from :func:`sample_rng` (seed, epoch, index), never from global state, so
a sample's augmentation does not depend on the worker that loads it, the number of workers
or whether the run was resumed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import albumentations as A
import numpy as np

from pipeline.core.geometry import crop
from pipeline.core.views import View, fit_view


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (flat keys of the stage's params section)."""

    flip_p: float = 0.5        # probability of a horizontal flip
    max_angle: float = 15.0    # in-plane rotation uniform in [-max_angle, max_angle] degrees
    photometric: bool = True   # apply the albumentations list of docs/design.md §9

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip_p {self.flip_p!r} must be a probability in [0, 1]")
        if not 0.0 <= self.max_angle <= 90.0:
            raise ValueError(f"max_angle {self.max_angle!r} must be in [0, 90] degrees")


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample in one epoch: a pure function of (seed, epoch, index)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def geometric(
    image: np.ndarray,
    box: tuple[float, float, float, float] | np.ndarray,
    size: tuple[int, int],
    view: View,
    pose: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Crop ``box`` of ``image`` to ``size`` (h, w) under ``view`` with one affine warp and
    return ``(crop uint8 [h, w, 3], corrected pose)``; the pose is ``None`` when not given.

    With a pose, ``view`` is first passed through :func:`fit_view` (its rotation is dropped if
    the corrected pose would leave ±99°); callers that report the view should fit it too."""
    view = fit_view(view, pose)
    out = crop(image, box, size, view=view)
    return out, (view.pose(*pose) if pose is not None else None)


def photometric(cfg: AugmentConfig | None = None) -> A.Compose:
    """The pose-preserving albumentations list of docs/design.md §9 (albumentations 2.0 names).

    Returns an empty Compose when ``cfg.photometric`` is false. Draw with
    :func:`apply_photometric` to use a per-sample generator.
    """
    cfg = cfg or AugmentConfig()
    if not cfg.photometric:
        return A.Compose([], strict=True)
    return A.Compose(
        [
            A.OneOf(
                [A.HueSaturationValue(), A.CLAHE(), A.Equalize(), A.Solarize(threshold_range=(0.5, 0.5))],
                p=0.5,
            ),
            A.OneOf([A.ChannelShuffle(), A.ChannelDropout(channel_drop_range=(1, 1), fill=0)], p=0.5),
            A.MedianBlur(blur_limit=(3, 5), p=0.5),
            A.OneOf([A.RandomShadow(), A.ISONoise()], p=0.5),
            A.CoarseDropout(
                num_holes_range=(1, 4), hole_height_range=(0.05, 0.2), hole_width_range=(0.05, 0.2), fill=0, p=0.5
            ),
        ],
        strict=True,
    )


def apply_photometric(transform: A.Compose, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Run ``transform`` on an RGB uint8 image with randomness drawn from ``rng`` only."""
    if not transform.transforms:
        return image
    transform.set_random_state(np.random.default_rng(rng.integers(2**63)), random.Random(int(rng.integers(2**63))))
    return transform(image=image)["image"]
