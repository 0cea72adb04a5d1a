"""Label noise for the synthetic training split (``synthesize.label_noise``).

The synthesizer's labels are exact by construction; 300W-LP's are not: its 122,450 images come
from 3,837 fitted faces (about 32 images per fit), so the images of one fit share that fit's
error. This module makes training labels noisy in the same way while the images stay the same:

- **The model.** A noise rotation ``N`` is drawn per *group* of images and composed with the true
  rotation in the camera frame: ``R_label = N @ R_true`` (``R`` as in
  :func:`pipeline.core.angles.rotation_3ddfa`, the model-to-camera rotation of the y-up 3DDFA
  frame), then turned back into Euler angles with :func:`pipeline.core.angles.angles_from_rotation`
  (the triple nearest the true pose), so every label is still a valid pose. ``N`` is a
  *rotation vector* (axis × angle) with N(0, σ) degrees on each camera axis (x right, y up, z
  toward the viewer), not three per-Euler-angle offsets: the error of a fit is an error in the
  head's orientation, and per-angle offsets would be a different error at every pose. Near
  frontal poses each of pitch, yaw and roll then moves by about σ; near |yaw| = 90° pitch and
  roll are ill-conditioned and move more (as real labels of profile faces do).
- **Outliers.** With probability ``outliers`` a group's rotation is instead an *outlier*: a
  rotation of :data:`OUTLIER_DEG` (20–40°) about a uniformly random axis (a failed fit).
- **Groups.** All images of one group share one draw (:func:`group_key`): consecutive blocks of
  ``group`` images, or, in a domain with a fixed set of people (``lab``, ``car``), blocks of
  ``group`` images of the same person.
- **Seeding.** The draw of a group comes from its own generator seeded by (synth seed, group), so
  it does not depend on the number of workers, and the standard-normal numbers behind it do not
  depend on σ or the outlier share: a sweep over σ scales the same directions (common random
  numbers).

The test split is never noisy (test labels stay exact). The exact pose stays in each training
``.mat`` as ``Pose_Para_exact`` beside the noisy ``Pose_Para`` (:func:`exact_angles` reads both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.io

from pipeline.core.angles import ANGLES, THETA, angles_from_rotation, rotation_from_degrees

# The outlier rotation's magnitude range in degrees: "off by 20–40°" (issue #31), the size of a
# fit that landed on the wrong pose, well outside the few-degree spread of a working fit. Fixed in
# code, not a params key: the outlier *share* is the knob.
OUTLIER_DEG = (20.0, 40.0)
NOISE_SALT = 31  # last seed word of every noise generator: keeps them apart from the image generators
SPLITS_ALLOWED = ("train",)
KEYS = ("sigma", "outliers", "group")
EXACT_FIELD = "Pose_Para_exact"  # the .mat field holding the exact pose when the label is noisy

Pose = tuple[float, float, float]


@dataclass(frozen=True)
class LabelNoise:
    """One split's label noise (``synthesize.label_noise.train``)."""

    sigma: float  # degrees, standard deviation of the noise rotation vector per camera axis, >= 0
    outliers: float  # share of groups whose draw is an OUTLIER_DEG rotation instead, in [0, 1]
    group: int  # images sharing one draw (300W-LP: about 32 per fit), >= 1

    def __post_init__(self) -> None:
        where = "synthesize.label_noise.train"
        for name in ("sigma", "outliers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"{where}.{name} must be a number, got {v!r}")
        if isinstance(self.group, bool) or not isinstance(self.group, int):
            raise ValueError(f"{where}.group must be an integer, got {self.group!r}")
        if self.sigma < 0:
            raise ValueError(f"{where}.sigma = {self.sigma} is out of range; allowed: >= 0 (degrees)")
        if not 0.0 <= self.outliers <= 1.0:
            raise ValueError(f"{where}.outliers = {self.outliers} is out of range; allowed: [0, 1] (a share)")
        if self.group < 1:
            raise ValueError(f"{where}.group = {self.group} is out of range; allowed: >= 1 (images per draw)")

    @property
    def off(self) -> bool:
        """No noise at all: the labels are written exactly as without the key."""
        return self.sigma == 0 and self.outliers == 0


def parse_label_noise(value: Any) -> dict[str, LabelNoise]:
    """``synthesize.label_noise`` (split → {sigma, outliers, group}) → split → :class:`LabelNoise`.

    ``{}`` is no noise. Only ``train`` is allowed: a ``test`` key is refused (test labels stay exact).
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"synthesize.label_noise must be a mapping of split -> {{sigma, outliers, group}} "
                         f"({{}} = no noise), got {value!r}")
    out: dict[str, LabelNoise] = {}
    for split, spec in value.items():
        if split == "test":
            raise ValueError("synthesize.label_noise.test is not allowed: label noise is for the training "
                             "split only, test labels stay exact (allowed keys: train)")
        if split not in SPLITS_ALLOWED:
            raise ValueError(f"synthesize.label_noise has unknown split {split!r}; allowed keys: train")
        if isinstance(spec, LabelNoise):
            out[split] = spec
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"synthesize.label_noise.{split} must be a mapping with keys {', '.join(KEYS)}, "
                             f"got {spec!r}")
        unknown = sorted(set(spec) - set(KEYS))
        missing = [k for k in KEYS if k not in spec]
        if unknown or missing:
            raise ValueError(f"synthesize.label_noise.{split} must have exactly the keys {', '.join(KEYS)}"
                             + (f"; unknown: {unknown}" if unknown else "") + (f"; missing: {missing}" if missing else ""))
        out[split] = LabelNoise(**{k: spec[k] for k in KEYS})
    return out


@dataclass(frozen=True)
class NoiseDraw:
    """The noise of one group: a rotation vector in degrees (camera axes) and whether it is an outlier."""

    key: tuple[int, int]  # (person, block): see group_key
    rotvec: Pose  # axis × angle, degrees; (0, 0, 0) = no noise
    outlier: bool

    @property
    def angle(self) -> float:
        """The noise rotation's angle, degrees."""
        return float(np.linalg.norm(self.rotvec))


def group_key(index: int, group: int, identities: int | None = None) -> tuple[int, int]:
    """The group of training image ``index``: (person, block).

    Without a fixed set of people (``wild``: a new face per image) the blocks are consecutive
    indices, ``index // group``. With ``identities`` people (image ``index`` shows person
    ``index % identities``, :class:`pipeline.synth.domain.Look`), a group is ``group`` images of one
    person: the person's k-th image (k = ``index // identities``) is in block ``k // group``.
    """
    if identities:
        return index % identities, (index // identities) // group
    return 0, index // group


def draw_noise(seed: int, key: tuple[int, int], noise: LabelNoise) -> NoiseDraw:
    """The draw of group ``key``, from its own generator (synth seed, train split = 0, key, salt).

    Always draws the same four things in the same order (3 standard normals, the outlier coin, an
    axis, a magnitude), so σ and the outlier share only change how they are used.
    """
    rng = np.random.default_rng([int(seed), 0, int(key[0]), int(key[1]), NOISE_SALT])
    z = rng.standard_normal(3)
    coin = float(rng.random())
    axis = rng.standard_normal(3)
    magnitude = float(rng.uniform(*OUTLIER_DEG))
    outlier = coin < noise.outliers
    rotvec = axis / np.linalg.norm(axis) * magnitude if outlier else z * float(noise.sigma)
    return NoiseDraw(key, tuple(float(v) for v in rotvec), bool(outlier))  # type: ignore[arg-type]


def rotvec_matrix(rotvec_deg: Pose | np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector in degrees (Rodrigues): angle ``|v|`` about ``v / |v|``,
    counter-clockwise looking down the axis (right-handed)."""
    v = np.radians(np.asarray(rotvec_deg, dtype=np.float64))
    theta = float(np.linalg.norm(v))
    if theta == 0.0:
        return np.eye(3)
    k = v / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * (kx @ kx)


def noisy_pose(pose: Pose, draw: NoiseDraw) -> Pose:
    """The label of an image at (pitch, yaw, roll) ``pose`` (degrees) under ``draw``: the noise
    rotation composed with the true one in the camera frame, back to the Euler triple nearest ``pose``."""
    if not any(draw.rotvec):
        return tuple(float(a) for a in pose)  # type: ignore[return-value]
    r = rotvec_matrix(draw.rotvec) @ rotation_from_degrees(*pose)
    return angles_from_rotation(r, reference=tuple(float(a) for a in pose))  # type: ignore[arg-type]


def exact_angles(root: str | Path) -> pd.DataFrame:
    """The exact and the written (possibly noisy) pose of every training image of a synthetic set.

    ``root`` is the folder ``hpekd synthesize`` wrote (with ``train/``). One row per image, sorted:
    ``image_path`` relative to ``root/train`` (as in the manifest's rows of that dataset),
    ``pitch``, ``yaw``, ``roll`` (exact, degrees) and ``label_pitch``, ``label_yaw``,
    ``label_roll`` (``Pose_Para``, what training sees). Without label noise both are the same.
    """
    train = Path(root) / "train"
    if not train.is_dir():
        raise ValueError(f"exact_angles: {str(train)!r} not found (expected the output folder of hpekd synthesize)")
    rows = []
    for mat in sorted(train.glob("*/*.mat")):
        data = scipy.io.loadmat(str(mat), variable_names=["Pose_Para", EXACT_FIELD])
        label = np.degrees(np.asarray(data["Pose_Para"], np.float64).reshape(-1)[:3])
        exact = np.degrees(np.asarray(data.get(EXACT_FIELD, data["Pose_Para"]), np.float64).reshape(-1)[:3])
        rows.append({"image_path": mat.with_suffix(".jpg").relative_to(train).as_posix(),
                     **dict(zip(ANGLES, exact.tolist())), **{f"label_{a}": float(v) for a, v in zip(ANGLES, label)}})
    columns = ["image_path", *ANGLES, *(f"label_{a}" for a in ANGLES)]
    return pd.DataFrame(rows, columns=columns)


def noise_summary(noise: LabelNoise, draws: Mapping[tuple[int, int], NoiseDraw],
                  pairs: list[tuple[Pose, Pose]]) -> dict[str, Any]:
    """What ``synth_info.json`` records of the training split's noise: the settings, the model, and
    what came out (groups, outlier groups, mean |label − exact| per angle, labels outside ±THETA = 99°)."""
    exact = np.array([p for p, _ in pairs], dtype=np.float64).reshape(-1, 3)
    label = np.array([q for _, q in pairs], dtype=np.float64).reshape(-1, 3)
    err = np.abs((label - exact + 180.0) % 360.0 - 180.0)
    angles = [d.angle for d in draws.values()]
    return {
        "sigma": float(noise.sigma), "outliers": float(noise.outliers), "group": int(noise.group),
        "outlier_deg": list(OUTLIER_DEG),
        "model": "R_label = N @ R_true (camera frame); N: rotation vector N(0, sigma) deg per axis, or for an "
                 "outlier group a uniform outlier_deg rotation about a random axis; one draw per group",
        "groups": len(draws), "outlier_groups": int(sum(d.outlier for d in draws.values())),
        "mean_noise_angle_deg": round(float(np.mean(angles)), 4) if angles else 0.0,
        "mean_abs_error_deg": {a: round(float(err[:, k].mean()), 4) if len(err) else 0.0 for k, a in enumerate(ANGLES)},
        "labels_outside_99": int(np.sum(np.any(np.abs(label) > THETA, axis=1))),  # dropped as out of range
    }


__all__ = ["EXACT_FIELD", "OUTLIER_DEG", "LabelNoise", "NoiseDraw", "draw_noise", "exact_angles", "group_key",
           "noise_summary", "noisy_pose", "parse_label_noise", "rotvec_matrix"]
