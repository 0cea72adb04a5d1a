"""``hpekd synthesize``: the synthetic head-pose dataset in the 300W-LP / AFLW2000 formats.

Layout written under ``out_dir`` (atomically: built in a temporary sibling, then renamed)::

    train/SYNTH/SYNTH_000000.jpg + .mat        300W-LP layout (one subset, "SYNTH")
    train/landmarks/SYNTH/SYNTH_000000_pts.mat
    test/image00000.jpg + .mat                 AFLW2000 flat layout
    contact_sheet.png                          24 training samples with their angles
    synth_info.json                            seed, counts, size, label noise (timings are only logged)

Every image is drawn from its own generator seeded by (seed, split, index), so the output does
not depend on the number of workers or the order they finish in. See :mod:`.matio` for what
the ``.mat`` files hold, and :mod:`.noise` for the optional label noise of the training split
(``label_noise``: noisy ``Pose_Para``, the exact pose beside it; the images are the same).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.core.io import Product, json_marker, replace_folder, write_json

from .domain import LOOKS, check_domain
from .head import HeadParams, sample_head
from .matio import write_label_mat, write_pts_mat
from .noise import LabelNoise, NoiseDraw, draw_noise, group_key, noise_summary, noisy_pose, parse_label_noise
from .scene import RenderedHead, render_head, sample_pose

log = logging.getLogger(__name__)

SUBSET = "SYNTH"
SPLITS = {"train": 0, "test": 1}


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """params.yaml section ``synthesize``."""

    seed: int
    n_train: int
    n_test: int
    size: int
    occluder_prob: float
    workers: int
    domain: str  # wild | lab | car: how the faces look (pipeline/synth/domain.py); labels alike
    # split -> LabelNoise ({} = exact labels; only "train"): pipeline/synth/noise.py. Required, no
    # default (keyword-only): every caller says whether its training labels are noisy.
    label_noise: Mapping[str, LabelNoise] = field(kw_only=True)

    def __post_init__(self) -> None:
        check_domain(self.domain)
        object.__setattr__(self, "label_noise", parse_label_noise(self.label_noise))
        for name in ("seed", "n_train", "n_test", "size", "workers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"synthesize.{name} must be an integer, got {v!r}")
        if self.n_train < 0 or self.n_test < 0:
            raise ValueError(f"synthesize.n_train/n_test must be >= 0, got {self.n_train}/{self.n_test}")
        if self.n_train + self.n_test == 0:
            raise ValueError("synthesize: n_train + n_test is 0, nothing to generate")
        if self.size < 64:
            raise ValueError(f"synthesize.size must be >= 64 pixels, got {self.size}")
        if not 0.0 <= float(self.occluder_prob) <= 1.0:
            raise ValueError(f"synthesize.occluder_prob must be in [0, 1], got {self.occluder_prob}")
        if self.workers < 1:
            raise ValueError(f"synthesize.workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class SampleSpec:
    """Everything random about one image, drawn from (seed, split, index)."""

    head: HeadParams
    pose: tuple[float, float, float]  # degrees, exactly degrees(Pose_Para[:3])
    center: tuple[float, float]
    face_size: float
    occluder: bool
    scene_seed: tuple[int, ...]
    domain: str = "wild"


def sample_name(split: str, index: int) -> str:
    return f"{SUBSET}_{index:06d}" if split == "train" else f"image{index:05d}"


def draw_sample(seed: int, split: str, index: int, size: int, occluder_prob: float = 0.2,
                domain: str = "wild") -> SampleSpec:
    """The random choices of image ``index`` of ``split`` (deterministic)."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    look = LOOKS.get(check_domain(domain))
    if look is not None:  # one of the set's people, its camera distance, no occluder
        pose = tuple(float(v) for v in np.degrees(np.radians(sample_pose(rng))))
        center, face_size = look.placement(rng, size)
        return SampleSpec(look.head(seed, index), pose, center, face_size, False,  # type: ignore[arg-type]
                          (seed, SPLITS[split], index, 1), domain)
    head = sample_head(rng)
    pose = tuple(float(v) for v in np.degrees(np.radians(sample_pose(rng))))
    face_size = float(rng.uniform(0.35, 0.6) * size)
    center = (float((size - 1) / 2 + rng.uniform(-0.06, 0.06) * size),
              float((size - 1) / 2 + rng.uniform(-0.06, 0.06) * size))
    occluder = bool(rng.random() < occluder_prob)
    return SampleSpec(head, pose, center, face_size, occluder, (seed, SPLITS[split], index, 1))  # type: ignore[arg-type]


def render_sample(spec: SampleSpec, size: int) -> RenderedHead:
    if spec.domain in LOOKS:
        return LOOKS[spec.domain].render(spec.head, spec.pose, size, spec.center, spec.face_size,
                                         np.random.default_rng(list(spec.scene_seed)))
    return render_head(spec.head, *spec.pose, size=size, center=spec.center, face_size=spec.face_size,
                       occluder=spec.occluder, rng=np.random.default_rng(list(spec.scene_seed)))


def _jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


Pose = tuple[float, float, float]
Job = tuple[str, str, int, int, int, float, str, LabelNoise | None]


def label_draw(seed: int, index: int, noise: LabelNoise, domain: str) -> NoiseDraw:
    """The label-noise draw of training image ``index``: shared by its group (people of a ``Look``
    domain are grouped per person)."""
    look = LOOKS.get(domain)
    return draw_noise(seed, group_key(index, noise.group, look.identities if look else None), noise)


def _write_one(job: Job) -> tuple[str, int, Pose, Pose, NoiseDraw | None]:
    """Render and write one image; returns (split, index, exact pose, label pose, noise draw or None)."""
    root_s, split, index, seed, size, occ, domain, noise = job
    root = Path(root_s)
    spec = draw_sample(seed, split, index, size, occ, domain)
    r = render_sample(spec, size)
    name = sample_name(split, index)
    folder = root / "train" / SUBSET if split == "train" else root / "test"
    (folder / f"{name}.jpg").write_bytes(_jpeg(r.rgb))
    label, draw, exact = spec.pose, None, None
    if split == "train" and noise is not None and not noise.off:
        draw = label_draw(seed, index, noise, domain)
        label = noisy_pose(spec.pose, draw)
        exact = r.pose_para
    pose_para = r.pose_para if exact is None else np.array([*np.radians(label), *r.pose_para[3:]], np.float64)
    write_label_mat(folder / f"{name}.mat", pose_para, r.pt2d, r.pt3d_68, exact=exact)
    if split == "train":
        write_pts_mat(root / "train" / "landmarks" / SUBSET / f"{name}_pts.mat", r.pt2d)
    return split, index, spec.pose, label, draw


def _warm_caches() -> None:
    from .scene import _noise_field
    from .texture import _grain

    _grain()
    _noise_field(0)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def contact_sheet(root: Path, names: list[tuple[str, tuple[float, float, float]]], tile: int = 200,
                  cols: int = 6) -> np.ndarray:
    """Grid of images (relative paths under ``root``) with "p y r" written under each; RGB."""
    rows = max(1, -(-len(names) // cols))
    th = tile + 22
    sheet = np.full((rows * th, cols * tile, 3), 255, np.uint8)
    for k, (rel, (p, y, r)) in enumerate(names):
        img = cv2.imread(str(root / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"contact sheet: could not read {root / rel}")
        img = cv2.cvtColor(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        y0, x0 = (k // cols) * th, (k % cols) * tile
        sheet[y0:y0 + tile, x0:x0 + tile] = img
        cv2.putText(sheet, f"p{p:+.0f} y{y:+.0f} r{r:+.0f}", (x0 + 4, y0 + tile + 16), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


# what `hpekd synthesize --out` may replace: a folder whose synth_info.json names this subset
SYNTH_DATASET = Product("an hpekd synthetic dataset (synth_info.json)", json_marker("synth_info.json", ("subset",), SUBSET))


def _render(cfg: SynthConfig, tmp: Path, progress: bool) -> tuple[dict, dict, dict]:
    """Every image of ``cfg`` into ``tmp``: (exact poses by (split, i), training labels by i, noise draws)."""
    noise = cfg.label_noise.get("train")
    jobs: list[Job] = [(str(tmp), split, i, cfg.seed, cfg.size, cfg.occluder_prob, cfg.domain, noise)
                       for split, n in (("train", cfg.n_train), ("test", cfg.n_test)) for i in range(n)]
    poses: dict[tuple[str, int], Pose] = {}
    labels: dict[int, Pose] = {}
    draws: dict[tuple[int, int], NoiseDraw] = {}
    bar = tqdm(total=len(jobs), desc="synthesize", unit="img", disable=not progress)

    def keep(result: tuple[str, int, Pose, Pose, NoiseDraw | None]) -> None:
        split, i, pose, label, draw = result
        poses[(split, i)] = pose
        if split == "train":
            labels[i] = label
        if draw is not None:
            draws[draw.key] = draw
        bar.update()

    if cfg.workers == 1:
        _init_worker()
        for job in jobs:
            keep(_write_one(job))
    else:
        _warm_caches()  # built once here, inherited by the forked workers
        with mp.get_context("fork").Pool(cfg.workers, initializer=_init_worker) as pool:
            for result in pool.imap_unordered(_write_one, jobs, chunksize=4):
                keep(result)
    bar.close()
    return poses, labels, draws


def _info(cfg: SynthConfig, poses: dict, labels: dict, draws: dict, render_s: float) -> dict[str, Any]:
    """The dataset's record (synth_info.json holds all but the timings)."""
    noise = cfg.label_noise.get("train")
    n = cfg.n_train + cfg.n_test
    yaws = np.array([p[1] for p in poses.values()])
    return {
        "config": asdict(cfg), "n_train": cfg.n_train, "n_test": cfg.n_test, "size": cfg.size,
        "seed": cfg.seed, "subset": SUBSET, "seconds": round(render_s, 3),
        "images_per_s": round(n / max(render_s, 1e-9), 2),
        "images_per_s_per_worker": round(n / max(render_s, 1e-9) / cfg.workers, 2),
        "abs_yaw_le_60_fraction": round(float(np.mean(np.abs(yaws) <= 60)), 4),
        # split -> the noise settings and what came out ({} = exact labels); the contact sheet
        # shows the exact poses the images were rendered at
        "label_noise": {} if noise is None or noise.off else {"train": noise_summary(
            noise, {k: draws[k] for k in sorted(draws)}, [(poses[("train", i)], labels[i]) for i in sorted(labels)])},
    }


def synthesize(cfg: SynthConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Generate the dataset of ``cfg`` (params section ``synthesize``) into ``out_dir`` (replacing it
    atomically when it is empty or an earlier synthetic dataset, :data:`SYNTH_DATASET`; anything
    else is refused); returns the info dict."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    with replace_folder(out, SYNTH_DATASET, "--out") as tmp:
        for d in (tmp / "train" / SUBSET, tmp / "train" / "landmarks" / SUBSET, tmp / "test"):
            d.mkdir(parents=True, exist_ok=True)
        poses, labels, draws = _render(cfg, tmp, progress)
        render_s = time.perf_counter() - t0
        picks = [("train", i) for i in range(min(cfg.n_train, 24))]
        picks += [("test", i) for i in range(min(cfg.n_test, 24 - len(picks)))]
        rels = [((f"train/{SUBSET}/" if s == "train" else "test/") + sample_name(s, i) + ".jpg", poses[(s, i)])
                for s, i in picks]
        sheet = contact_sheet(tmp, rels)
        cv2.imwrite(str(tmp / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        info = _info(cfg, poses, labels, draws, render_s)
        # Only what the seed determines goes into the file, so a rerun gives the same bytes
        # (DVC would otherwise see a changed output and rerun every later stage).
        stable = {k: v for k, v in info.items() if not k.startswith(("seconds", "images_per_s"))}
        stable["config"] = {k: v for k, v in stable["config"].items() if k != "workers"}
        write_json(tmp / "synth_info.json", stable)
    log.info("synthesized %d train + %d test images (%dx%d) into %s in %.1fs", cfg.n_train, cfg.n_test,
             cfg.size, cfg.size, out, render_s)
    if info["label_noise"]:
        s = info["label_noise"]["train"]
        log.info("training labels noisy: sigma %.2f deg, outlier share %.3f, %d images per draw; %d groups (%d "
                 "outliers), mean |label - exact| pitch/yaw/roll %s deg", s["sigma"], s["outliers"], s["group"],
                 s["groups"], s["outlier_groups"], "/".join(f"{v:.2f}" for v in s["mean_abs_error_deg"].values()))
    return info
