"""Procedural synthetic head-pose dataset (the project's built-in default data).

Public API:

- :func:`generate.synthesize` / :class:`generate.SynthConfig` — write the dataset
  (300W-LP train layout + AFLW2000 test layout, contact sheet, info json).
- :func:`scene.render_head` — one head at a pose on a random background → (rgb, pt2d,
  pt3d_68, pose_para); :func:`scene.render_onto` — draw a head at a pose/centre/size onto an
  existing canvas (multi-face images), returns :class:`scene.Placed` labels.
- :func:`head.sample_head` (random :class:`head.HeadParams`), :func:`head.landmarks_model`
  (the 68 model-space landmarks, [3, 68], for ``project_3ddfa``), :data:`landmarks.FLIP_PERM`
  (iBUG-68 left/right permutation), :func:`scene.sample_pose` (300W-LP-like pose draw).
"""

from .generate import SynthConfig, draw_sample, render_sample, sample_name, synthesize
from .head import HeadParams, landmarks_model, sample_head
from .landmarks import FLIP_PERM
from .scene import Placed, RenderedHead, render_head, render_onto, sample_pose

__all__ = [
    "FLIP_PERM", "HeadParams", "Placed", "RenderedHead", "SynthConfig", "draw_sample", "landmarks_model",
    "render_head", "render_onto", "render_sample", "sample_head", "sample_name", "sample_pose", "synthesize",
]
