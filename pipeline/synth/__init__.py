"""Procedural synthetic head-pose dataset (the built-in default data): 3D heads rendered with the
3DDFA rotation and projection into the 300W-LP (train) and AFLW2000 (test) layouts."""

from .generate import SynthConfig, draw_sample, render_sample, sample_name, synthesize
from .head import HeadParams, landmarks_model, sample_head
from .landmarks import FLIP_PERM
from .noise import LabelNoise, exact_angles
from .scene import Placed, RenderedHead, render_head, render_onto, sample_pose

__all__ = [
    "FLIP_PERM", "HeadParams", "LabelNoise", "Placed", "RenderedHead", "SynthConfig", "draw_sample", "exact_angles",
    "landmarks_model", "render_head", "render_onto", "render_sample", "sample_head", "sample_name", "sample_pose", "synthesize",
]
