"""Label noise of the synthetic training split (``synthesize.label_noise``, pipeline/synth/noise.py):
the noisy label is the exact pose rotated by the group's drawn noise, the images and the test split
stay exact, groups share one draw, bad settings are one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from click.testing import CliRunner
from scipy.spatial.transform import Rotation

from pipeline.core.angles import rotation_from_degrees
from pipeline.core.config import config_from_mapping, default_config, default_section
from pipeline.synth import SynthConfig, draw_sample, sample_name, synthesize
from pipeline.synth.domain import LAB_IDENTITIES
from pipeline.synth.noise import (
    OUTLIER_DEG,
    LabelNoise,
    NoiseDraw,
    exact_angles,
    group_key,
    noisy_pose,
    parse_label_noise,
)
from stages.cli import main
from tests.helpers.params import full_params

SIZE = 64
SEED = 7
NOISE = {"train": {"sigma": 5.0, "outliers": 0.9, "group": 3}}  # at seed 7: group 0 normal, group 1 an outlier


def _run(out: Path, label_noise: dict, n_train: int = 6, workers: int = 1, domain: str = "wild") -> Path:
    synthesize(default_config(SynthConfig, "synthesize", n_train=n_train, n_test=2, seed=SEED, size=SIZE, workers=workers, domain=domain, label_noise=label_noise), out, progress=False)
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same set without and with noise (6 training images, groups of 3)."""
    root = tmp_path_factory.mktemp("noise")
    return _run(root / "exact", {}), _run(root / "noisy", NOISE)


def _mat(root: Path, i: int) -> dict:
    return scipy.io.loadmat(root / "train" / "SYNTH" / f"{sample_name('train', i)}.mat")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expected_rotvec(index: int, sigma: float, outliers: float, group: int) -> np.ndarray:
    """The group's draw, recomputed here from the documented generator (seed, train = 0, person 0,
    block, salt 31) and draw order (3 normals, coin, axis, magnitude)."""
    rng = np.random.default_rng([SEED, 0, 0, index // group, 31])
    z, coin, axis, mag = rng.standard_normal(3), rng.random(), rng.standard_normal(3), rng.uniform(*OUTLIER_DEG)
    return axis / np.linalg.norm(axis) * mag if coin < outliers else z * sigma


def test_crafted_rotations_move_the_expected_angle() -> None:
    """At the frontal pose a rotation about the camera's z (y) axis is a pure roll (yaw) change;
    3DDFA's Rz/Ry turn the other way, hence the sign."""
    assert noisy_pose((0.0, 0.0, 0.0), NoiseDraw((0, 0), (0.0, 0.0, 10.0), False)) == pytest.approx((0, 0, -10))
    assert noisy_pose((0.0, 0.0, 0.0), NoiseDraw((0, 0), (0.0, 10.0, 0.0), False)) == pytest.approx((0, -10, 0))
    pose = (12.0, 95.0, -20.0)  # beyond |yaw| 90: the label keeps the Euler branch of the true pose
    label = noisy_pose(pose, NoiseDraw((0, 0), (0.5, -0.3, 0.2), False))
    assert abs(label[1] - 95.0) < 2.0
    assert noisy_pose(pose, NoiseDraw((0, 0), (0.0, 0.0, 0.0), False)) == pose


def test_noisy_label_is_exact_pose_rotated_by_the_draw(pair: tuple[Path, Path]) -> None:
    exact_dir, noisy_dir = pair
    n = NOISE["train"]
    for i in range(6):
        mat = _mat(noisy_dir, i)
        exact = np.degrees(mat["Pose_Para_exact"][0, :3])
        label = np.degrees(mat["Pose_Para"][0, :3])
        assert tuple(exact) == draw_sample(SEED, "train", i, SIZE).pose  # the rendered pose, untouched
        np.testing.assert_array_equal(mat["Pose_Para"][0, 3:], mat["Pose_Para_exact"][0, 3:])  # t, s exact
        noise = Rotation.from_rotvec(np.radians(_expected_rotvec(i, n["sigma"], n["outliers"], n["group"]))).as_matrix()
        np.testing.assert_allclose(rotation_from_degrees(*label), noise @ rotation_from_degrees(*exact), atol=1e-9)
        # landmarks are those of the image: only the angles are noisy
        np.testing.assert_array_equal(mat["pt2d"], _mat(exact_dir, i)["pt2d"])
        np.testing.assert_array_equal(mat["Pose_Para_exact"], _mat(exact_dir, i)["Pose_Para"])


def test_images_and_test_split_unchanged(pair: tuple[Path, Path]) -> None:
    exact_dir, noisy_dir = pair
    for f in sorted(exact_dir.rglob("*")):
        rel = f.relative_to(exact_dir)
        if f.is_file() and not (rel.parts[:2] == ("train", "SYNTH") and f.suffix == ".mat") \
                and f.name != "synth_info.json":
            assert _sha(f) == _sha(noisy_dir / rel), rel  # images, landmarks, test labels, contact sheet
    for i in range(2):
        mat = scipy.io.loadmat(noisy_dir / "test" / f"{sample_name('test', i)}.mat")
        assert "Pose_Para_exact" not in mat
        assert tuple(np.degrees(mat["Pose_Para"][0, :3])) == draw_sample(SEED, "test", i, SIZE).pose


def test_sigma_zero_is_exact(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    exact_dir, _ = pair
    off = _run(tmp_path / "off", {"train": {"sigma": 0.0, "outliers": 0.0, "group": 3}})
    for i in range(6):  # no noise at all: the files are those of a set without the key
        rel = Path("train") / "SYNTH" / f"{sample_name('train', i)}.mat"
        assert _sha(off / rel) == _sha(exact_dir / rel)
    assert json.loads((off / "synth_info.json").read_text())["label_noise"] == {}
    some = _run(tmp_path / "some", {"train": {"sigma": 0.0, "outliers": 0.9, "group": 3}})
    table = exact_angles(some)
    for i in range(6):  # σ 0: only the outlier groups' labels move
        row = table.iloc[i]
        moved = any(row[f"label_{a}"] != row[a] for a in ("pitch", "yaw", "roll"))
        assert moved == (i >= 3) == bool(np.any(_expected_rotvec(i, 0.0, 0.9, 3)))


def test_groups_share_one_draw(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, noisy_dir = pair

    def noise_of(root: Path, i: int) -> np.ndarray:
        mat = _mat(root, i)
        return rotation_from_degrees(*np.degrees(mat["Pose_Para"][0, :3])) @ \
            rotation_from_degrees(*np.degrees(mat["Pose_Para_exact"][0, :3])).T

    for a, b in ((0, 1), (0, 2), (3, 5)):
        np.testing.assert_allclose(noise_of(noisy_dir, a), noise_of(noisy_dir, b), atol=1e-9)
    assert not np.allclose(noise_of(noisy_dir, 0), noise_of(noisy_dir, 3), atol=1e-6)
    # a domain with people: a group is images of one person (person = index mod 12)
    assert group_key(13, 2, LAB_IDENTITIES) == (1, 0) and group_key(25, 2, LAB_IDENTITIES) == (1, 1)
    assert group_key(7, 3) == (0, 2)
    lab = _run(tmp_path / "lab", {"train": {"sigma": 4.0, "outliers": 0.0, "group": 2}}, n_train=14, domain="lab")
    np.testing.assert_allclose(noise_of(lab, 0), noise_of(lab, 12), atol=1e-9)
    assert not np.allclose(noise_of(lab, 0), noise_of(lab, 1), atol=1e-6)
    # and the draw does not depend on the number of workers
    again = _run(tmp_path / "w2", NOISE, workers=2)
    for i in range(6):
        rel = Path("train") / "SYNTH" / f"{sample_name('train', i)}.mat"
        assert _sha(again / rel) == _sha(noisy_dir / rel)


def test_synth_info_and_reader(pair: tuple[Path, Path]) -> None:
    exact_dir, noisy_dir = pair
    info = json.loads((noisy_dir / "synth_info.json").read_text())
    assert info["config"]["label_noise"] == NOISE
    rec = info["label_noise"]["train"]
    assert (rec["sigma"], rec["outliers"], rec["group"], rec["groups"], rec["outlier_groups"]) == (5.0, 0.9, 3, 2, 1)
    assert 20 <= np.linalg.norm(_expected_rotvec(3, 5.0, 0.9, 3)) <= 40  # the outlier group's rotation
    assert rec["outlier_deg"] == list(OUTLIER_DEG)
    table = exact_angles(noisy_dir)
    assert list(table.columns) == ["image_path", "pitch", "yaw", "roll", "label_pitch", "label_yaw", "label_roll"]
    assert table["image_path"].tolist() == [f"SYNTH/{sample_name('train', i)}.jpg" for i in range(6)]
    err = np.abs(table[["label_pitch", "label_yaw", "label_roll"]].to_numpy() - table[["pitch", "yaw", "roll"]].to_numpy())
    assert rec["mean_abs_error_deg"]["yaw"] == pytest.approx(err[:, 1].mean(), abs=1e-4)
    plain = exact_angles(exact_dir)  # without noise: the label is the exact pose
    np.testing.assert_array_equal(plain[["pitch", "yaw", "roll"]].to_numpy(), table[["pitch", "yaw", "roll"]].to_numpy())
    np.testing.assert_array_equal(plain[["label_pitch", "label_yaw", "label_roll"]].to_numpy(),
                                  plain[["pitch", "yaw", "roll"]].to_numpy())
    assert json.loads((exact_dir / "synth_info.json").read_text())["label_noise"] == {}


@pytest.mark.parametrize("value,message", [
    ({"test": {"sigma": 1.0, "outliers": 0.0, "group": 1}},
     r"synthesize.label_noise.test is not allowed: .*test labels stay exact"),
    ({"train": {"sigma": -1.0, "outliers": 0.0, "group": 1}}, r"label_noise.train.sigma = -1.0 .*allowed: >= 0"),
    ({"train": {"sigma": 1.0, "outliers": -0.1, "group": 1}}, r"label_noise.train.outliers = -0.1 .*allowed: \[0, 1\]"),
    ({"train": {"sigma": 1.0, "outliers": 1.5, "group": 1}}, r"label_noise.train.outliers = 1.5 .*allowed: \[0, 1\]"),
    ({"train": {"sigma": 1.0, "outliers": 0.0, "group": 0}}, r"label_noise.train.group = 0 .*allowed: >= 1"),
    ({"train": {"sigma": 1.0, "group": 2}}, r"label_noise.train must have exactly the keys .*missing: \['outliers'\]"),
    ({"val": {"sigma": 1.0, "outliers": 0.0, "group": 1}}, r"unknown split 'val'; allowed keys: train"),
    ([1, 2], r"synthesize.label_noise must be a mapping"),
])
def test_bad_input(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_label_noise(value)
    with pytest.raises(ValueError, match=message):
        SynthConfig(**{**default_section("synthesize"), "n_train": 1, "label_noise": value})  # the record's own check


def test_required_key_and_cli(tmp_path: Path) -> None:
    """The key is required (no silent default); the stage reads it and reports the noise in one line;
    a test-split key is a one-line error with nothing written."""
    section = {"seed": 1, "n_train": 3, "n_test": 1, "size": SIZE, "occluder_prob": 0.2, "workers": 1,
               "domain": "wild"}
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['label_noise'\]"):
        config_from_mapping(SynthConfig, section, "synthesize", require_all=True)
    cfg = config_from_mapping(SynthConfig, {**section, "label_noise": {"train": {"sigma": 2, "outliers": 0, "group": 1}}},
                              "synthesize", require_all=True)
    assert cfg.label_noise == {"train": LabelNoise(2, 0, 1)}

    def cli(label_noise: dict) -> tuple[int, str]:
        params = full_params()
        params["synthesize"] = {**section, "label_noise": label_noise}
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        res = CliRunner().invoke(main, ["synthesize", "--out", str(tmp_path / "d"), "--params", str(path),
                                        "--no-progress"])
        return res.exit_code, res.output

    code, out = cli({"train": {"sigma": 3.0, "outliers": 0.0, "group": 32}})
    assert code == 0 and "training labels noisy (sigma 3 deg" in out and "test labels exact" in out, out
    assert "Pose_Para_exact" in scipy.io.loadmat(tmp_path / "d" / "train" / "SYNTH" / "SYNTH_000000.mat")
    code, out = cli({"test": {"sigma": 3.0, "outliers": 0.0, "group": 32}})
    assert code == 1 and out.startswith("Error:") and len(out.strip().splitlines()) == 1, out
    assert "test labels stay exact" in out
