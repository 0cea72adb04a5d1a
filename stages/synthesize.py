"""``hpekd synthesize``: generate the built-in synthetic head-pose dataset."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import load_config, params_option, user_errors


@click.command(name="synthesize")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (e.g. data/synthetic); replaced atomically, and only when it is a synthetic dataset "
                   "(synth_info.json) or empty.")
@params_option
@click.option("--workers", type=int, default=None,
              help="Worker processes (overrides synthesize.workers from params).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@user_errors
def cli(out_dir: str, params_path: str, workers: int | None, no_progress: bool) -> None:
    """Render procedural 3D heads at 300W-LP-like poses (3DDFA rotation and projection).

    Reads section `synthesize` of params.yaml (seed, n_train, n_test, size, occluder_prob,
    workers, domain: wild = faces in the wild, lab = a lab-video look, car = an in-car infrared
    look, labels alike; label_noise: {} = exact labels, or {train: {sigma: DEG, outliers: SHARE,
    group: N}} = noisy training labels, one random rotation per N images, the images unchanged)
    and writes OUT/train (300W-LP layout: SYNTH/*.jpg + .mat with Pose_Para, pt2d, pt3d_68, and
    Pose_Para_exact when the label is noisy; landmarks/SYNTH/*_pts.mat), OUT/test (AFLW2000 flat
    layout, exact labels), OUT/contact_sheet.png and OUT/synth_info.json. The same seed always
    gives the same files.
    """
    from pipeline.core.io import check_folder_output
    from pipeline.synth.generate import SYNTH_DATASET, synthesize

    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    check_folder_output(out_dir, SYNTH_DATASET, "--out", [params_path])
    cfg = load_config(params_path, "synthesize", workers=workers)
    info = synthesize(cfg, Path(out_dir), progress=not no_progress)
    click.echo(f"synthesized {info['n_train']} train + {info['n_test']} test images ({cfg.size}x{cfg.size}) "
               f"into {out_dir} in {info['seconds']:.1f}s ({info['images_per_s']:.1f} images/s); "
               f"contact sheet: {Path(out_dir) / 'contact_sheet.png'}")
    if info["label_noise"]:
        n = info["label_noise"]["train"]
        click.echo(f"training labels noisy (sigma {n['sigma']:g} deg, outlier share {n['outliers']:g}, "
                   f"{n['group']} images per draw): mean |label - exact| pitch/yaw/roll "
                   + "/".join(f"{v:.2f}" for v in n["mean_abs_error_deg"].values()) + " deg; test labels exact")
