"""Synthetic head-pose dataset: labels, 3DDFA projection, flips, determinism, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from pipeline.core.angles import flip_pose, project_3ddfa
from pipeline.core.config import default_config
from pipeline.core.images import read_image
from pipeline.synth import (
    FLIP_PERM,
    SynthConfig,
    draw_sample,
    landmarks_model,
    render_head,
    render_onto,
    sample_head,
    sample_name,
    synthesize,
)
from pipeline.synth.generate import SampleSpec
from pipeline.synth.raster import rasterize
from stages.cli import main
from tests.helpers.params import write_params

SIZE = 128


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    synthesize(default_config(SynthConfig, "synthesize", n_train=5, n_test=3, seed=7, size=SIZE, workers=1, label_noise={}), out, progress=False)
    return out


def test_layout_and_labels(synth_dir: Path) -> None:
    for i in range(5):
        name = sample_name("train", i)
        assert (synth_dir / "train" / "SYNTH" / f"{name}.jpg").is_file()
        pts = scipy.io.loadmat(synth_dir / "train" / "landmarks" / "SYNTH" / f"{name}_pts.mat")
        assert pts["pts_2d"].shape == (68, 2) and pts["pts_3d"].shape == (68, 2)
    for i in range(3):
        assert (synth_dir / "test" / f"{sample_name('test', i)}.jpg").is_file()
    assert (synth_dir / "contact_sheet.png").is_file()
    assert (synth_dir / "synth_info.json").is_file()
    assert not list(synth_dir.parent.glob(".data.*"))  # no temporary left behind


@pytest.mark.parametrize("split,index", [("train", 0), ("train", 3), ("test", 1)])
def test_mat_angles_and_projection(synth_dir: Path, split: str, index: int) -> None:
    name = sample_name(split, index)
    folder = synth_dir / "train" / "SYNTH" if split == "train" else synth_dir / "test"
    mat = scipy.io.loadmat(folder / f"{name}.mat")
    pp = mat["Pose_Para"]
    assert pp.shape == (1, 7) and mat["pt2d"].shape == (2, 68) and mat["pt3d_68"].shape == (3, 68)
    spec = draw_sample(7, split, index, SIZE)
    # reading the .mat back gives exactly the angles the image was rendered with
    assert tuple(np.degrees(pp[0, :3])) == spec.pose
    # projecting the model landmarks with the 3DDFA formula and Pose_Para reproduces pt2d
    proj = project_3ddfa(landmarks_model(spec.head), *spec.pose, scale=pp[0, 6], t=pp[0, 3:6], height=SIZE)
    np.testing.assert_allclose(proj, mat["pt2d"], atol=1e-6)
    np.testing.assert_allclose(mat["pt3d_68"][:2], mat["pt2d"], atol=1e-9)
    # the face is where its labels say: the landmark box is inside the image and sized as drawn
    assert 0 <= mat["pt2d"].min() and mat["pt2d"].max() <= SIZE - 1


def test_render_head_matches_projection() -> None:
    hp = sample_head(np.random.default_rng(3))
    r = render_head(hp, 10.0, -35.0, 5.0, SIZE)
    assert r.rgb.shape == (SIZE, SIZE, 3) and r.rgb.dtype == np.uint8
    pp = r.pose_para
    proj = project_3ddfa(landmarks_model(hp), 10.0, -35.0, 5.0, pp[6], pp[3:6], SIZE)
    np.testing.assert_allclose(proj, r.pt2d, atol=1e-9)


@pytest.mark.parametrize("pose", [(12.0, 40.0, -8.0), (-20.0, -75.0, 15.0), (5.0, 0.0, 30.0)])
def test_flip_is_pitch_minus_yaw_minus_roll(pose: tuple[float, float, float]) -> None:
    hp = sample_head(np.random.default_rng(11))
    c = (60.0, 70.0)
    a = render_head(hp, *pose, SIZE, center=c, face_size=55)
    b = render_head(hp, *flip_pose(*pose), SIZE, center=(SIZE - 1 - c[0], c[1]), face_size=55)
    mirrored = np.stack([SIZE - 1 - a.pt2d[0], a.pt2d[1]])[:, FLIP_PERM]
    np.testing.assert_allclose(b.pt2d, mirrored, atol=1e-6)
    # and the pixels: the mirrored image of the flipped-pose head is the head at the original pose
    # (same shape and features; compare the head masks, backgrounds differ)
    ca, cb = np.zeros((SIZE, SIZE, 3), np.uint8), np.zeros((SIZE, SIZE, 3), np.uint8)
    ma = render_onto(ca, hp, pose, c, 55).mask
    mb = render_onto(cb, hp, flip_pose(*pose), (SIZE - 1 - c[0], c[1]), 55).mask
    assert np.mean(ma != mb[:, ::-1]) < 0.01


def test_flip_perm_is_an_involution() -> None:
    assert sorted(FLIP_PERM) == list(range(68))
    np.testing.assert_array_equal(FLIP_PERM[FLIP_PERM], np.arange(68))
    lm = landmarks_model(sample_head(np.random.default_rng(0)))
    np.testing.assert_allclose(lm[:, FLIP_PERM] * np.array([[-1], [1], [1]]), lm, atol=1e-12)
    # iBUG-68: landmark 36 (subject's right eye corner) is on the image left at zero pose
    assert lm[0, 36] < 0 < lm[0, 45] and lm[0, 0] < 0 < lm[0, 16]


def test_positive_yaw_turns_the_nose_to_the_image_left() -> None:
    hp = sample_head(np.random.default_rng(1))
    r0 = render_head(hp, 0.0, 0.0, 0.0, SIZE)
    r1 = render_head(hp, 0.0, 40.0, 0.0, SIZE)
    nose = 30
    assert r1.pt2d[0, nose] - r1.pt2d[0, 27] < r0.pt2d[0, nose] - r0.pt2d[0, 27] - 3


def test_determinism(tmp_path: Path, synth_dir: Path) -> None:
    again = tmp_path / "again"
    synthesize(default_config(SynthConfig, "synthesize", n_train=5, n_test=3, seed=7, size=SIZE, workers=2, label_noise={}), again, progress=False)
    for rel in ("train/SYNTH/SYNTH_000002.jpg", "train/SYNTH/SYNTH_000002.mat",
                "train/landmarks/SYNTH/SYNTH_000004_pts.mat", "test/image00001.jpg", "test/image00001.mat"):
        assert (again / rel).read_bytes() == (synth_dir / rel).read_bytes(), rel
    other = tmp_path / "other"
    synthesize(default_config(SynthConfig, "synthesize", workers=1, n_train=1, n_test=0, seed=8, size=SIZE, label_noise={}), other, progress=False)
    rel = "train/SYNTH/SYNTH_000000.jpg"
    assert (other / rel).read_bytes() != (synth_dir / rel).read_bytes()


def test_pose_spread() -> None:
    poses = np.array([draw_sample(0, "train", i, 64).pose for i in range(400)])
    assert np.abs(poses).max() <= 99
    assert np.abs(poses[:, 1]).max() > 75 and np.mean(np.abs(poses[:, 1]) <= 60) > 0.6
    assert 12 < poses[:, 0].std() < 22 and 8 < poses[:, 2].std() < 18
    # pitch and roll have a uniform share, out to ±45 and ±30 (normal(0, 13) alone puts
    # ~2 % of pitch beyond ±30, normal(0, 12) ~10 % of roll beyond ±20), so the network sees their
    # whole range and its predictions are less pulled toward the mean
    assert 0.07 < np.mean(np.abs(poses[:, 0]) > 30) < 0.25
    assert 0.13 < np.mean(np.abs(poses[:, 2]) > 20) < 0.3 and np.mean(np.abs(poses[:, 2]) > 30) < 0.05


def test_rasterizer_z_buffer() -> None:
    xy = np.array([[2, 2], [2, 12], [12, 2], [4, 4], [4, 14], [14, 4]], np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    near_second = rasterize(xy, np.array([0, 0, 0, 1, 1, 1.0]), tris, 16, 16, cull_back=False)
    owner = np.full((16, 16), -1)
    owner[near_second.ys, near_second.xs] = near_second.tri
    assert owner[5, 5] == 1 and owner[3, 3] == 0
    near_first = rasterize(xy, np.array([1, 1, 1, 0, 0, 0.0]), tris, 16, 16, cull_back=False)
    owner[near_first.ys, near_first.xs] = near_first.tri
    assert owner[5, 5] == 0
    np.testing.assert_allclose(near_first.bary.sum(1), 1, atol=1e-5)


def test_cli(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml",
                          {"synthesize": {"seed": 1, "n_train": 2, "n_test": 1, "size": 96, "occluder_prob": 0.5}})
    res = CliRunner().invoke(main, ["synthesize", "--out", str(tmp_path / "d"), "--params", str(params),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "2 train + 1 test" in res.output
    assert (tmp_path / "d" / "test" / "image00000.mat").is_file()
    help_ = CliRunner().invoke(main, ["synthesize", "--help"])
    assert help_.exit_code == 0 and "300W-LP" in help_.output


@pytest.mark.parametrize("section,message", [
    ({"n_train": -3}, "n_train/n_test must be >= 0"),
    ("  n_trian: 3\n", r"unknown key\(s\) \['n_trian'\]"),  # as written: the unknown key is named first
    ({"size": 10}, "size must be >= 64"),
    ({"occluder_prob": 2}, r"occluder_prob must be in \[0, 1\]"),
    ({"domain": "studio"}, r"synthesize.domain 'studio' is unknown; choose one of wild, lab, car"),
])
def test_cli_bad_params(tmp_path: Path, section: str | dict, message: str) -> None:
    """A wrong value in otherwise complete params, or a misspelt key, is one line and nothing is written."""
    import re

    params = tmp_path / "params.yaml"
    if isinstance(section, dict):
        write_params(params, {"synthesize": section})
    else:
        params.write_text("synthesize:\n" + section)
    res = CliRunner().invoke(main, ["synthesize", "--out", str(tmp_path / "d"), "--params", str(params)])
    assert res.exit_code == 1
    assert res.output.startswith("Error:") and re.search(message, res.output), res.output
    assert not (tmp_path / "d").exists()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        default_config(SynthConfig, "synthesize", workers=0, label_noise={})
    with pytest.raises(ValueError, match="nothing to generate"):
        default_config(SynthConfig, "synthesize", n_train=0, n_test=0, label_noise={})
    res = CliRunner().invoke(main, ["synthesize", "--out", "x", "--workers", "0"])
    assert res.exit_code == 1 and "--workers must be >= 1" in res.output


def _labels_as_drawn(out: Path, seed: int, i: int, domain: str) -> SampleSpec:
    """Training image ``i`` of a synthesized ``domain`` folder: its .mat angles are the drawn pose and
    its landmarks project with the 3DDFA formula. Returns the drawn sample."""
    spec = draw_sample(seed, "train", i, SIZE, domain=domain)
    mat = scipy.io.loadmat(out / "train" / "SYNTH" / f"{sample_name('train', i)}.mat")
    pp = mat["Pose_Para"]
    assert tuple(np.degrees(pp[0, :3])) == spec.pose
    proj = project_3ddfa(landmarks_model(spec.head), *spec.pose, scale=pp[0, 6], t=pp[0, 3:6], height=SIZE)
    np.testing.assert_allclose(proj, mat["pt2d"], atol=1e-6)
    return spec


def test_lab_domain_same_labels_other_look(tmp_path: Path) -> None:
    """``domain: lab``: the labels follow the same conventions (the .mat angles are the rendered
    pose, the landmarks project with the 3DDFA formula), the people repeat (12 identities), the
    wall is plain, no occluder, a fixed camera distance — and the images differ from ``wild``."""
    from pipeline.synth.domain import LAB_IDENTITIES

    out = tmp_path / "lab"
    synthesize(default_config(SynthConfig, "synthesize", workers=1, n_train=14, n_test=2, seed=3, size=SIZE, domain="lab", label_noise={}), out, progress=False)
    for i in (0, 5, 13):
        spec = _labels_as_drawn(out, 3, i, "lab")
        assert not spec.occluder and 0.40 * SIZE <= spec.face_size <= 0.44 * SIZE
    same = draw_sample(3, "train", 1, SIZE, domain="lab").head
    assert draw_sample(3, "train", 1 + LAB_IDENTITIES, SIZE, domain="lab").head == same  # the same person
    assert draw_sample(3, "train", 2, SIZE, domain="lab").head != same
    # the pose distribution is the wild one (sample_pose): as wide in yaw, within ±99°
    yaws = np.array([draw_sample(0, "train", i, 64, domain="lab").pose[1] for i in range(300)])
    assert np.abs(yaws).max() <= 99 and 0.7 < np.mean(np.abs(yaws) <= 60) < 0.95
    img = read_image(out / "train" / "SYNTH" / f"{sample_name('train', 0)}.jpg")
    corner = img[:12, :12].reshape(-1, 3).astype(float)
    assert corner.std(0).max() < 12  # plain wall (sensor noise only), no clutter
    info = json.loads((out / "synth_info.json").read_text())
    assert info["config"]["domain"] == "lab"
    wild = tmp_path / "wild"
    synthesize(default_config(SynthConfig, "synthesize", workers=1, n_train=1, n_test=0, seed=3, size=SIZE, label_noise={}), wild, progress=False)
    rel = "train/SYNTH/SYNTH_000000.jpg"
    assert (wild / rel).read_bytes() != (out / rel).read_bytes()


def test_car_domain_same_labels_infrared_look(tmp_path: Path) -> None:
    """``domain: car``: the same label conventions, 8 drivers who repeat, and an infrared camera:
    grayscale images (R = G = B up to JPEG)."""
    from pipeline.synth.domain import CAR_IDENTITIES

    out = tmp_path / "car"
    synthesize(default_config(SynthConfig, "synthesize", workers=1, n_train=10, n_test=2, seed=4, size=SIZE, domain="car", label_noise={}), out, progress=False)
    for i in (0, 9):
        _labels_as_drawn(out, 4, i, "car")
    same = draw_sample(4, "train", 2, SIZE, domain="car").head
    assert draw_sample(4, "train", 2 + CAR_IDENTITIES, SIZE, domain="car").head == same
    assert draw_sample(4, "train", 3, SIZE, domain="car").head != same
    img = read_image(out / "train" / "SYNTH" / f"{sample_name('train', 0)}.jpg").astype(float)
    assert np.abs(img - img.mean(2, keepdims=True)).max() < 8  # grey: no colour beyond JPEG's
    assert json.loads((out / "synth_info.json").read_text())["config"]["domain"] == "car"
