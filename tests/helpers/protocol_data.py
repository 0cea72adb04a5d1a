"""The four datasets of the paper's protocols in the exact on-disk layouts of the real
distributions, made from the project's synthetic heads (:mod:`pipeline.synth`), with the four
published box files (``300W_LP.json``, ``AFLW2000.json``, ``BIWI.json``, ``AFLW.json``).

:func:`make_protocol_data` writes under ``raw`` (a user's ``data/raw/``)::

    300W_LP/{AFW,AFW_Flip,HELEN,HELEN_Flip,IBUG,IBUG_Flip,LFPW,LFPW_Flip}/<name>.jpg + <name>.mat
    300W_LP/landmarks/{AFW,HELEN,IBUG,LFPW}/<name>_pts.mat      (pts_2d, pts_3d 68×2)
    300W_LP/Code/ModelGeneration/model_info.mat                 (clutter the download has)
    AFLW2000/image00002.jpg + image00002.mat …                  (pt2d 2×21, −1 = missing)
    BIWI/hpdb/readme.txt, BIWI/hpdb/NN.obj
    BIWI/hpdb/NN/{depth.cal, rgb.cal, frame_XXXXX_rgb.png, frame_XXXXX_pose.txt, frame_XXXXX_depth.bin}
    aflw/data/aflw.sqlite + aflw/data/flickr/{0,2,3}/imageNNNNN.jpg
    300W_LP.json  AFLW2000.json  BIWI.json  AFLW.json

Every label is the exact pose the head was rendered with, written in the dataset's own
convention: 300W-LP / AFLW2000 ``Pose_Para`` = radians(pitch, yaw, roll); BIWI the file rotation
whose HopeNet conversion gives (pitch, yaw, roll) (:func:`tests.helpers.datasets.biwi_rotation_file`);
AFLW ``FacePose`` = radians(pitch, yaw, −roll) (the project reads (pitch, yaw, −roll)).

What the real distributions do and this copies:

- 300W-LP: names ``<SUBSET>_<source image>_<k>`` where ``k`` numbers the profile views of one
  source face (same person and scene, yaw stepped away from frontal); the ``_Flip`` folders hold
  the mirror image of every file under the *same* name (pose (p, −y, −r), landmarks mirrored);
  one IBUG source is ``image_092 _01`` (a space in the name, as in the real 300W-LP);
  ``landmarks/`` exists only for the four unflipped subsets.
- AFLW2000: sparse ids (``image00002``, ``image00004``, …), ``pt2d`` 2×21 (the AFLW points, far-side
  ones −1) plus ``pt3d_68``; one face is beyond ±99° (yaw 120°) and is still in AFLW2000.json
  (the published file lists all 2,000 images).
- BIWI: sequences 06 and 15–24 start at ``frame_00000``, the others at ``frame_00003`` (as the
  real ones do, judging by the published BIWI.json), a frame number is skipped in one sequence, and ``01/frame_00003`` is
  in ``hpdb/`` but not in BIWI.json (the published file has 15,677 of the 15,678 frames; its
  sequence 01 starts at ``frame_00004``). ``type`` is ``test`` for the paper's sequences.
- AFLW: one image holds two faces (their own ``face_id``, pose and ``FaceRect``; one ``test`` and
  one ``train`` in AFLW.json, as the real ``0/image00070.jpg``), one image is a single-channel
  (grayscale, ``bw = 1``) JPEG, ``FeatureCoords`` lists only the visible points (missing ones have
  no row), and one image is absent from AFLW.json (the real file covers 24,383 of AFLW's faces).
- Box files: floats, clipped to the image (as the published ones are), keys relative to the
  folder each file names (``AFW/…``, ``image00002.jpg``, ``01/frame_00004_rgb.png``,
  ``0/image00002.jpg``); AFLW2000.json has ``bbox`` only, BIWI.json ``bbox`` + ``type``,
  AFLW.json ``bbox`` + ``faceid`` + ``type``, 300W_LP.json ``bbox``.

Everything is drawn from generators seeded by (seed, dataset, item), so the same arguments give
the same bytes; changing one dataset's count leaves the others unchanged.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.angles import flip_pose
from pipeline.manifest.spec import PAPER_BIWI_TEST_GROUPS
from pipeline.synth.head import HeadParams, sample_head
from pipeline.synth.landmarks import FLIP_PERM
from pipeline.synth.matio import mat_bytes, write_pts_mat
from pipeline.synth.scene import Placed, background, render_head, render_onto, sample_light, sample_pose
from tests.helpers.datasets import AFLW_SCHEMA, biwi_rotation_file, write_biwi_pose_txt

__all__ = ["DatasetData", "Face", "ProtocolData", "make_protocol_data"]

Pose = tuple[float, float, float]
Box = tuple[float, float, float, float]

W300LP_SOURCES = ("AFW", "HELEN", "IBUG", "LFPW")
# share of the source faces per subset, about as in the real 300W-LP (AFW 5,207 / HELEN 37,676 /
# IBUG 1,786 / LFPW 16,556 images); every subset gets at least one face
_W300LP_SHARE = {"AFW": 0.12, "HELEN": 0.5, "IBUG": 0.08, "LFPW": 0.3}
DEFAULT_BIWI_SEQUENCES = ("01", "02", "06", "07", "13", "16")
AFLW2000_OUT_OF_RANGE = (10.0, 120.0, -5.0)   # the AFLW2000 face beyond ±99° (pitch, yaw, roll)
_DATASET_IDS = {"300w_lp": 1, "aflw2000": 2, "biwi": 3, "aflw": 4}


@dataclass(frozen=True)
class Face:
    """One face as written, and what a reader should make of it.

    ``path``: the image path relative to :attr:`DatasetData.root` (the manifest ``image_path``);
    ``face``: the face number in ``sample_id`` (AFLW ``face_id``; 0 elsewhere); ``pose``: (pitch,
    yaw, roll) degrees in the project's convention; ``key``: its key in the dataset's box file and
    ``bbox`` its published box (both None when the file does not list it); ``split``: the
    ``type`` in the file (None when the file has no types, or lacks the face)."""

    path: str
    face: int
    pose: Pose
    key: str | None
    bbox: Box | None
    split: str | None

    @property
    def in_range(self) -> bool:
        return all(abs(a) <= 99.0 for a in self.pose)


@dataclass(frozen=True)
class DatasetData:
    """One dataset: ``root`` to give ``index.datasets[].root``, its reader ``format``, the published
    box file ``json`` (None when not written) and its faces in the reader's row order."""

    format: str
    root: Path
    json: Path | None
    faces: tuple[Face, ...]

    def sample_id(self, name: str, face: Face) -> str:
        """The manifest ``sample_id`` of ``face`` when the dataset is indexed as ``name``."""
        return f"{name}/{face.path}#{face.face}"


@dataclass(frozen=True)
class ProtocolData:
    raw: Path
    w300lp: DatasetData
    aflw2000: DatasetData
    biwi: DatasetData
    aflw: DatasetData

    @property
    def datasets(self) -> dict[str, DatasetData]:
        """By reader format: ``300w_lp``, ``aflw2000``, ``biwi``, ``aflw``."""
        return {d.format: d for d in (self.w300lp, self.aflw2000, self.biwi, self.aflw)}


# --------------------------------------------------------------------------- drawing

def _rng(seed: int, dataset: str, *item: int) -> np.random.Generator:
    return np.random.default_rng([seed, _DATASET_IDS[dataset], *item])


def _compose(bg: np.ndarray, heads: list[tuple[HeadParams, Pose, tuple[float, float], float]],
             rng: np.random.Generator) -> tuple[np.ndarray, list[Placed]]:
    """Heads drawn onto a copy of ``bg`` (any aspect), then blur, gain and pixel noise as in
    :func:`pipeline.synth.scene.render_head` (which only makes square images with one head)."""
    img = bg.copy()
    placed = [render_onto(img, hp, pose, center, fs, light=sample_light(rng)) for hp, pose, center, fs in heads]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9))
    gain, bias, amp = rng.uniform(0.85, 1.15), rng.uniform(-15, 15), rng.uniform(1, 5)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    out = img.astype(np.float32) * np.float32(gain) + np.float32(bias) + np.float32(amp) * noise
    return np.clip(out, 0, 255).astype(np.uint8), placed


def _published_box(pt2d: np.ndarray, w: int, h: int, rng: np.random.Generator) -> Box:
    """A detector-like face box around the landmarks (wider for profiles, more forehead than
    chin, a little jitter), clipped to the image like the published boxes; floats."""
    x1, y1 = pt2d.min(axis=1)
    x2, y2 = pt2d.max(axis=1)
    fw, fh = x2 - x1, y2 - y1
    half_w = 0.55 * max(fw, 0.8 * fh) * rng.uniform(0.97, 1.05)
    cx = (x1 + x2) / 2 + rng.uniform(-0.03, 0.03) * fw
    top = y1 - rng.uniform(0.2, 0.3) * fh
    bottom = y2 + rng.uniform(0.03, 0.08) * fh
    box = (max(0.0, cx - half_w), max(0.0, top), min(float(w), cx + half_w), min(float(h), bottom))
    return tuple(float(v) for v in box)  # type: ignore[return-value]


def _jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    img = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def _pose_mat(pose_para: np.ndarray, pt2d: np.ndarray, pt3d_68: np.ndarray) -> bytes:
    """The 300W-LP / AFLW2000-3D ``.mat``: Pose_Para, pt2d, pt3d_68 and the 3DMM fields the real
    files also carry (zeros here; nothing reads them)."""
    return mat_bytes({
        "Pose_Para": np.asarray(pose_para, np.float64).reshape(1, 7),
        "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1)),
        "Color_Para": np.zeros((1, 7)), "Illum_Para": np.zeros((1, 10)), "Tex_Para": np.zeros((199, 1)),
        "pt2d": np.asarray(pt2d, np.float64), "pt3d_68": np.asarray(pt3d_68, np.float64).reshape(3, 68),
        "roi": np.zeros((1, 4)),
    })


def _box_json(path: Path, entries: dict[str, list[dict]]) -> Path:
    _write(path, json.dumps(entries))
    return path


# --------------------------------------------------------------------------- 300W-LP

def _w300lp_sources(n_sources: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(subset, source name) of each source face, named as in 300W-LP; at least one per subset
    and two in IBUG (one of them ``image_092 _01``, the real name with a space)."""
    counts = {"AFW": 1, "HELEN": 1, "IBUG": 2, "LFPW": 1}
    rest = n_sources - sum(counts.values())
    for s in W300LP_SOURCES:
        counts[s] += int(_W300LP_SHARE[s] * rest)
    counts["HELEN"] += n_sources - sum(counts.values())
    names = {"AFW": ["134212_1"], "HELEN": ["232194_1"], "IBUG": ["image_003_1", "image_092 _01", "image_014_01"],
             "LFPW": ["image_test_0001"]}
    out = []
    for s in W300LP_SOURCES:
        pool = names[s]
        k = 0
        while len(pool) < counts[s]:
            k += 1
            if s == "AFW":
                name = f"{int(rng.integers(10**6, 10**10))}_{int(rng.integers(1, 3))}"
            elif s == "HELEN":
                name = f"{int(rng.integers(10**5, 10**8))}_1"
            elif s == "IBUG":
                name = f"image_{k + 14:03d}_1"
            else:
                name = f"image_train_{(k + 1) // 2:04d}" if k % 2 else f"image_test_{k // 2 + 1:04d}"
            if name not in pool:
                pool.append(name)
        out += [(s, name) for name in pool[: counts[s]]]
    return out


def _make_300w_lp(root: Path, n: int, size: int, seed: int) -> list[Face]:
    """``n`` images: ``ceil(n / 2)`` rendered views and the mirror of each in ``<subset>_Flip``
    (for odd ``n`` one view of a source with several has none, so no folder is left empty).
    Returns the faces in the reader's order (subset folders as listed, then file name)."""
    n_views = (n + 1) // 2
    rng = _rng(seed, "300w_lp")
    n_sources = max(5, min(n_views, -(-n_views // 3)))
    sources = _w300lp_sources(n_sources, rng)
    # views per source (300W-LP's _0, _1, …): at least one each, n_views in all
    per = np.ones(len(sources), int)
    while per.sum() < n_views:
        per[int(rng.integers(len(sources)))] += 1
    no_flip = (int(np.argmax(per)), int(per.max()) - 1) if n % 2 else None
    faces: dict[str, list[Face]] = {}
    for i, ((subset, src), k_views) in enumerate(zip(sources, per)):
        r = _rng(seed, "300w_lp", 1, i)
        hp = sample_head(r)
        p0, y0, r0 = sample_pose(r)
        y0 = float(np.clip(y0, -45, 45))
        step = float(r.uniform(8, 20)) * (1 if r.random() < 0.5 else -1)
        face_size = float(r.uniform(0.38, 0.55) * size)
        center = (float((size - 1) / 2 + r.uniform(-0.05, 0.05) * size),
                  float((size - 1) / 2 + r.uniform(-0.05, 0.05) * size))
        scene_seed = int(r.integers(2**31 - 1))
        for k in range(int(k_views)):
            pose = (p0, float(np.clip(y0 + k * step, -95, 95)), r0)
            # one scene per source face (as 300W-LP's views share their photo's background)
            out = render_head(hp, *pose, size, center=center, face_size=face_size,
                              rng=np.random.default_rng(scene_seed))
            name = f"{subset}_{src}_{k}"
            for flipped in (False,) if (i, k) == no_flip else (False, True):
                folder = f"{subset}_Flip" if flipped else subset
                if flipped:
                    rgb = np.ascontiguousarray(out.rgb[:, ::-1])
                    pt2d = out.pt2d[:, FLIP_PERM].copy()
                    pt2d[0] = size - 1 - pt2d[0]
                    pt3d = out.pt3d_68[:, FLIP_PERM].copy()
                    pt3d[0] = pt2d[0]
                    fp = flip_pose(*pose)
                    para = np.array([*np.radians(fp), size - 1 - out.pose_para[3], *out.pose_para[4:]])
                    label = fp
                else:
                    rgb, pt2d, pt3d, para, label = out.rgb, out.pt2d, out.pt3d_68, out.pose_para, pose
                _write(root / folder / f"{name}.jpg", _jpeg(rgb))
                _write(root / folder / f"{name}.mat", _pose_mat(para, pt2d, pt3d))
                if not flipped:
                    (root / "landmarks" / subset).mkdir(parents=True, exist_ok=True)
                    write_pts_mat(root / "landmarks" / subset / f"{name}_pts.mat", pt2d)
                rel = f"{folder}/{name}.jpg"
                box = _published_box(pt2d, size, size, _rng(seed, "300w_lp", 2, i, k, int(flipped)))
                label = tuple(float(v) for v in label)
                faces.setdefault(folder, []).append(Face(rel, 0, label, rel, box, None))  # type: ignore[arg-type]
    _write(root / "Code" / "ModelGeneration" / "model_info.mat", mat_bytes({"model_info": np.zeros((1, 1))}))
    ordered: list[Face] = []
    for subset in W300LP_SOURCES:
        for folder in (subset, f"{subset}_Flip"):
            ordered += sorted(faces[folder], key=lambda f: f.path)
    return ordered


# --------------------------------------------------------------------------- AFLW2000

# the 21 AFLW points from the 68 iBUG ones (index, or indices averaged), in AFLW order:
# brows (image-left brow: left corner, centre, right corner; then the image-right brow), eyes
# (likewise, centre = mean of the lids), ears, nose left/tip/right, mouth left/centre/right, chin
AFLW21 = (
    (17,), (19,), (21,), (22,), (24,), (26,),
    (36,), (37, 38, 40, 41), (39,), (42,), (43, 44, 46, 47), (45,),
    (0,), (31,), (30,), (35,), (16,),
    (48,), (51, 57), (54,), (8,),
)
# symmetric pairs (0-based AFLW21 index) and the |yaw| beyond which the far one is not visible
_AFLW21_PAIRS = (((12, 16), 20.0), ((0, 5), 50.0), ((6, 11), 50.0), ((1, 4), 65.0), ((7, 10), 65.0),
                 ((2, 3), 75.0), ((8, 9), 75.0), ((13, 15), 60.0), ((17, 19), 70.0))


def aflw21(pt2d: np.ndarray, pt3d_68: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """The 21 AFLW points [2, 21] from the 68 and whether each is visible (the far-side point of
    a symmetric pair is hidden beyond the pair's |yaw|; depth = pt3d z, larger is nearer)."""
    pts = np.stack([pt2d[:, list(ix)].mean(axis=1) for ix in AFLW21], axis=1)
    z = np.array([pt3d_68[2, list(ix)].mean() for ix in AFLW21])
    visible = np.ones(21, bool)
    for (a, b), limit in _AFLW21_PAIRS:
        if abs(yaw) > limit:
            visible[a if z[a] < z[b] else b] = False
    return pts, visible


def _make_aflw2000(root: Path, n: int, size: int, seed: int) -> list[Face]:
    rng = _rng(seed, "aflw2000")
    number = 2
    out_of_range = min(5, n - 1)
    faces = []
    for i in range(n):
        r = _rng(seed, "aflw2000", 1, i)
        hp = sample_head(r)
        pose = AFLW2000_OUT_OF_RANGE if i == out_of_range else sample_pose(r)
        out = render_head(hp, *pose, size, face_size=float(r.uniform(0.38, 0.55) * size),
                          center=(float((size - 1) / 2 + r.uniform(-0.05, 0.05) * size),
                                  float((size - 1) / 2 + r.uniform(-0.05, 0.05) * size)),
                          rng=np.random.default_rng(int(r.integers(2**31 - 1))))
        pts, visible = aflw21(out.pt2d, out.pt3d_68, pose[1])
        pts[:, ~visible] = -1.0
        name = f"image{number:05d}"
        _write(root / f"{name}.jpg", _jpeg(out.rgb))
        _write(root / f"{name}.mat", _pose_mat(out.pose_para, pts, out.pt3d_68))
        box = _published_box(out.pt2d, size, size, r)
        faces.append(Face(f"{name}.jpg", 0, tuple(float(v) for v in pose), f"{name}.jpg", box, None))  # type: ignore[arg-type]
        number += int(rng.integers(1, 5))
    return faces


# --------------------------------------------------------------------------- BIWI

def _biwi_start(seq: str) -> int:
    """First frame number: sequences 15–24 (and 06) start at frame_00000 in the real BIWI, the others at 00003."""
    return 0 if seq == "06" or int(seq) >= 15 else 3


def _depth_bin(w: int, h: int) -> bytes:
    """A BIWI ``frame_XXXXX_depth.bin``: width, height (int32), then runs of (empty count, full
    count, full-count int16 depths); here one empty run over the whole frame."""
    return struct.pack("<iiii", w, h, w * h, 0)


_CAL = "{f} 0 {cx} \n0 {f} {cy} \n0 0 1 \n\n0 0 0 0 \n\n1 0 0 \n0 1 0 \n0 0 1 \n\n{t} 0 0 \n"
_README = """Biwi Kinect Head Pose Database (layout copy made by the hpekd tests from synthetic heads)

Each folder NN holds one sequence: frame_XXXXX_rgb.png (the colour image),
frame_XXXXX_depth.bin (the compressed depth image) and frame_XXXXX_pose.txt (the head
rotation, 3 rows, then the head centre in mm); depth.cal and rgb.cal are the camera
calibrations. NN.obj is the person's template head mesh.
"""


def _make_biwi(root: Path, sequences: tuple[str, ...], n_per_seq: int, size: int, seed: int) -> list[Face]:
    h, w = size, 2 * round(size * 2 / 3)   # 4:3 like the Kinect's 640×480
    hpdb = root / "hpdb"
    _write(hpdb / "readme.txt", _README)
    test = set(PAPER_BIWI_TEST_GROUPS)
    faces = []
    for seq in sorted(sequences):
        r = _rng(seed, "biwi", 1, int(seq))
        hp = sample_head(r)
        bg = background(r, (h, w))
        d = hpdb / seq
        _write(hpdb / f"{seq}.obj", "# template head\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
        _write(d / "depth.cal", _CAL.format(f=575.816 * w / 640, cx=w / 2, cy=h / 2, t=0))
        _write(d / "rgb.cal", _CAL.format(f=517.679 * w / 640, cx=w / 2, cy=h / 2 + 0.5, t=-25.2))
        # a smooth head movement, as in a video: each angle a sine over the sequence
        base = np.array([r.uniform(-10, 10), r.uniform(-20, 20), r.uniform(-8, 8)])
        amp = np.array([r.uniform(10, 30), r.uniform(30, 65), r.uniform(5, 20)])
        phase = r.uniform(0, 2 * np.pi, 3)
        face_size = float(r.uniform(0.26, 0.34) * h)
        cx, cy = float(r.uniform(0.4, 0.6) * w), float(r.uniform(0.38, 0.48) * h)
        skip = int(r.integers(1, max(2, n_per_seq))) if seq == sorted(sequences)[-1] else -1
        number = _biwi_start(seq)
        split = "test" if seq in test else "train"
        for k in range(n_per_seq):
            if k == skip:
                number += 1   # a frame number missing from the sequence
            fr = _rng(seed, "biwi", 2, int(seq), k)
            t = 2 * np.pi * k / max(n_per_seq, 1)
            pose = tuple(float(v) for v in np.clip(base + amp * np.sin(t + phase), -85, 85))
            centre = (cx + fr.uniform(-0.02, 0.02) * w, cy + fr.uniform(-0.02, 0.02) * h)
            rgb, (placed,) = _compose(bg, [(hp, pose, centre, face_size)], fr)  # type: ignore[list-item]
            frame = f"frame_{number:05d}"
            _write(d / f"{frame}_rgb.png", _png(rgb))
            write_biwi_pose_txt(d / f"{frame}_pose.txt", biwi_rotation_file(*pose),
                                t=(float(fr.uniform(-60, 60)), float(fr.uniform(-40, 40)), float(fr.uniform(850, 1050))))
            _write(d / f"{frame}_depth.bin", _depth_bin(w, h))
            key = f"{seq}/{frame}_rgb.png"
            # BIWI.json lacks 01/frame_00003 (the real file's sequence 01 starts at frame_00004)
            listed = not (seq == "01" and number == 3)
            box = _published_box(placed.pt2d, w, h, fr)
            faces.append(Face(f"hpdb/{key}", 0, pose, key if listed else None, box if listed else None,  # type: ignore[arg-type]
                              split if listed else None))
            number += 1
    return faces


# --------------------------------------------------------------------------- AFLW

_AFLW_EXTRA_TABLES = {
    "FaceMetaData": "face_id INTEGER, sex TEXT, occluded INTEGER, glasses INTEGER, bw INTEGER, annot_type_id INTEGER",
    "FeatureCoordTypes": "feature_id INTEGER PRIMARY KEY, descr TEXT, code TEXT, x REAL, y REAL, z REAL",
}
_AFLW21_CODES = ("LBLC", "LBC", "LBRC", "RBLC", "RBC", "RBRC", "LELC", "LEC", "LERC", "RELC", "REC", "RERC",
                 "LE", "LN", "NC", "RN", "RE", "MLC", "MC", "MRC", "CC")


def _make_aflw(root: Path, n_images: int, size: int, seed: int) -> tuple[list[Face], dict[str, list[dict]]]:
    """``root`` = ``aflw/data``. Image 2 holds two faces, image 4 is grayscale, image 7 is not in
    AFLW.json; the first third of the images are ``test`` (the two-face image: one of each)."""
    rng = _rng(seed, "aflw")
    two_faces, gray, unlisted = min(2, n_images - 1), min(4, n_images - 1), min(7, n_images - 1)
    n_test = max(1, n_images // 3)
    root.mkdir(parents=True, exist_ok=True)
    db = root / "aflw.sqlite"
    if db.exists():
        db.unlink()
    con = sqlite3.connect(db)
    for table, cols in {**AFLW_SCHEMA, **_AFLW_EXTRA_TABLES}.items():
        con.execute(f"CREATE TABLE {table} ({cols})")
    con.executemany("INSERT INTO FeatureCoordTypes VALUES (?, ?, ?, 0, 0, 0)",
                    [(j + 1, code, code) for j, code in enumerate(_AFLW21_CODES)])
    faces: list[Face] = []
    number, face_id = 2, 39341
    entries: dict[str, list[dict]] = {}
    for i in range(n_images):
        r = _rng(seed, "aflw", 1, i)
        n_faces = 2 if i == two_faces else 1
        h = int(r.integers(size, int(size * 1.5) + 1))
        w = int(r.integers(size, int(size * 1.6) + 1)) * n_faces
        fs = float(r.uniform(0.3, 0.45) * h)
        heads, poses = [], []
        for j in range(n_faces):
            pose = sample_pose(r)
            cx = (j + 0.5) * w / n_faces + r.uniform(-0.08, 0.08) * w / n_faces
            heads.append((sample_head(r), pose, (float(cx), float(r.uniform(0.4, 0.6) * h)), fs))
            poses.append(pose)
        rgb, placed = _compose(background(r, (h, w)), heads, r)
        folder = str(r.choice(["0", "2", "3"]))
        filepath = f"{folder}/image{number:05d}.jpg"
        file_id = f"image{number:05d}.jpg"
        is_gray = i == gray
        _write(root / "flickr" / filepath, _jpeg(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if is_gray else rgb))
        con.execute("INSERT INTO FaceImages (db_id, file_id, filepath, bw, width, height) VALUES ('flickr', ?, ?, ?, ?, ?)",
                    (file_id, filepath, int(is_gray), w, h))
        listed = i != unlisted
        for j, (pose, pl) in enumerate(zip(poses, placed)):
            fid = face_id + j
            pitch, yaw, roll = pose
            con.execute("INSERT INTO Faces VALUES (?, ?, 'flickr')", (fid, file_id))
            con.execute("INSERT INTO FacePose VALUES (?, ?, ?, ?, 1)",
                        (fid, math.radians(-roll), math.radians(pitch), math.radians(yaw)))
            x1, y1 = pl.pt2d.min(axis=1)
            x2, y2 = pl.pt2d.max(axis=1)
            side = max(x2 - x1, y2 - y1)
            con.execute("INSERT INTO FaceRect VALUES (?, ?, ?, ?, ?, 1)",
                        (fid, int(round((x1 + x2 - side) / 2)), int(round(y1 - 0.2 * side)), int(round(side)), int(round(side))))
            con.execute("INSERT INTO FaceMetaData VALUES (?, ?, 0, 0, ?, 1)", (fid, "mf"[int(r.integers(2))], int(is_gray)))
            pts, visible = aflw21(pl.pt2d, pl.pt3d_68, yaw)
            con.executemany("INSERT INTO FeatureCoords VALUES (?, ?, ?, ?, 1)",
                            [(fid, k + 1, float(pts[0, k]), float(pts[1, k])) for k in range(21) if visible[k]])
            box = _published_box(pl.pt2d, w, h, r)
            split = ("test" if j == 0 else "train") if i < n_test else "train"
            if listed:
                entries.setdefault(filepath, []).append({"bbox": list(box), "faceid": fid, "type": split})
            faces.append(Face(f"flickr/{filepath}", fid, tuple(float(v) for v in pose),  # type: ignore[arg-type]
                              filepath if listed else None, box if listed else None, split if listed else None))
        number += int(rng.integers(1, 4))
        face_id += n_faces + int(rng.integers(0, 3))
    con.commit()
    con.close()
    return faces, entries


# --------------------------------------------------------------------------- all four

def make_protocol_data(
    raw: Path, *, n_300wlp: int = 96, n_aflw2000: int = 24, n_biwi_per_seq: int = 6,
    biwi_sequences: tuple[str, ...] = DEFAULT_BIWI_SEQUENCES, n_aflw_images: int = 30, size: int = 128,
    seed: int = 0, with_300wlp_json: bool = True,
) -> ProtocolData:
    """Write the four datasets and the four box files under ``raw`` (see the module docstring).

    ``n_300wlp``: 300W-LP images over the eight folders (half of them the ``_Flip`` mirrors);
    ``n_aflw2000``: AFLW2000 images (one of them beyond ±99°); BIWI: ``n_biwi_per_seq`` frames
    in each of ``biwi_sequences`` (default 3 of the paper's test sequences and 3 train ones);
    ``n_aflw_images``: AFLW images (one with two faces); ``size``: the side of the 300W-LP /
    AFLW2000 images (450 in the real ones), the height of BIWI frames (4:3) and about the
    smaller side of AFLW images. ``with_300wlp_json``: also write 300W_LP.json. ``raw`` should
    be new or empty: files of the same names are overwritten, others are left as they are.
    """
    if n_300wlp < 10:
        raise ValueError("n_300wlp must be >= 10 (five source faces and their mirrors in the 8 folders)")
    if n_aflw2000 < 2 or n_aflw_images < 8 or n_biwi_per_seq < 2 or size < 64:
        raise ValueError("need n_aflw2000 >= 2, n_aflw_images >= 8, n_biwi_per_seq >= 2, size >= 64")
    seqs = tuple(f"{int(s):02d}" for s in biwi_sequences)
    if "01" not in seqs or not set(seqs) & set(PAPER_BIWI_TEST_GROUPS) or set(seqs) <= set(PAPER_BIWI_TEST_GROUPS):
        raise ValueError(f"biwi_sequences must include 01 and both test and train sequences, got {seqs}")
    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)

    w_root = raw / "300W_LP"
    w_faces = _make_300w_lp(w_root, n_300wlp, size, seed)
    w_json = None
    if with_300wlp_json:
        w_json = _box_json(raw / "300W_LP.json", {f.key: [{"bbox": list(f.bbox)}] for f in w_faces})  # type: ignore[misc, arg-type]

    a_root = raw / "AFLW2000"
    a_faces = _make_aflw2000(a_root, n_aflw2000, size, seed)
    a_json = _box_json(raw / "AFLW2000.json", {f.key: [{"bbox": list(f.bbox)}] for f in a_faces})  # type: ignore[misc, arg-type]

    b_root = raw / "BIWI"
    b_faces = _make_biwi(b_root, seqs, n_biwi_per_seq, size, seed)
    b_json = _box_json(raw / "BIWI.json", {f.key: [{"bbox": list(f.bbox), "type": f.split}]  # type: ignore[arg-type]
                                           for f in b_faces if f.key is not None})

    f_root = raw / "aflw" / "data"
    f_faces, f_entries = _make_aflw(f_root, n_aflw_images, size, seed)
    f_json = _box_json(raw / "AFLW.json", f_entries)

    return ProtocolData(
        raw=raw,
        w300lp=DatasetData("300w_lp", w_root, w_json, tuple(w_faces)),
        aflw2000=DatasetData("aflw2000", a_root, a_json, tuple(a_faces)),
        biwi=DatasetData("biwi", b_root, b_json, tuple(b_faces)),
        aflw=DatasetData("aflw", f_root, f_json, tuple(f_faces)),
    )
