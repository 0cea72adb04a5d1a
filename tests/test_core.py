"""Angle conventions, bin grids, the crop geometry and config/checkpoint boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.core.angles import (
    aflw_angles,
    angles_from_rotation,
    augment_pose,
    biwi_angles,
    euler_twin,
    flip_pose,
    project_3ddfa,
    rotate_pose,
    rotation_3ddfa,
    rotation_from_degrees,
)
from pipeline.core.bins import BinGrid
from pipeline.core.config import config_from_mapping
from pipeline.core.geometry import crop, crop_matrix, transform_points
from pipeline.core.io import atomic_path
from pipeline.core.views import View
from pipeline.model.checkpoint import checkpoint_state, load_checkpoint, model_from_checkpoint, save_checkpoint
from pipeline.model.network import HeadPoseNet, ModelSpec
from stages.cli import main

RNG = np.random.default_rng(0)
POINTS = RNG.normal(size=(3, 40))  # a random rigid 3D point cloud stands in for a head


def test_rotation_matches_3ddfa_product_and_inverts() -> None:
    p, y, r = 0.3, -0.7, 0.2
    cx, sx, cy, sy, cz, sz = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    expected = (
        np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
        @ np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
        @ np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    )
    np.testing.assert_allclose(rotation_3ddfa(p, y, r), expected)
    for angles in [(10, -40, 20), (-80, 85, -60), (0, 0, 0), (45, 89, -98)]:
        np.testing.assert_allclose(angles_from_rotation(rotation_from_degrees(*angles)), angles, atol=1e-6)
    # |yaw| > 90 has an equivalent representation with |yaw| < 90: same rotation
    back = angles_from_rotation(rotation_from_degrees(45, 98, -98))
    np.testing.assert_allclose(rotation_from_degrees(*back), rotation_from_degrees(45, 98, -98), atol=1e-9)
    # ... and the reference picks it: the triple nearest the label
    np.testing.assert_allclose(angles_from_rotation(rotation_from_degrees(45, 98, -98), reference=(40, 95, -90)),
                               (45, 98, -98), atol=1e-6)
    for angles in [(45.0, 98.0, -98.0), (-10.0, -95.0, 20.0), (170.0, 5.0, -175.0)]:
        twin = euler_twin(*angles)
        assert all(-180 <= a < 180 for a in twin) and twin != pytest.approx(angles)
        np.testing.assert_allclose(rotation_from_degrees(*twin), rotation_from_degrees(*angles), atol=1e-12)


def _fit_image_points(pose: tuple[float, float, float], scale: float, t: np.ndarray, h: int) -> np.ndarray:
    return project_3ddfa(POINTS, *pose, scale=scale, t=t, height=h)


def test_horizontal_flip_negates_yaw_and_roll() -> None:
    w = h = 200
    pose, scale, t = (12.0, 35.0, -18.0), 40.0, np.array([90.0, 110.0, 0.0])
    uv = _fit_image_points(pose, scale, t, h)
    mirrored = uv.copy()
    mirrored[0] = w - 1 - uv[0]
    # the mirrored head is the original model mirrored in x, seen at the flipped pose
    model_mirror = POINTS * np.array([[-1], [1], [1]])
    t_flip = np.array([w - 1 - t[0], t[1], 0.0])
    uv_flip = project_3ddfa(model_mirror, *flip_pose(*pose), scale=scale, t=t_flip, height=h)
    np.testing.assert_allclose(uv_flip, mirrored, atol=1e-9)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("angle", [-15.0, 7.5, 15.0])
def test_augmented_pose_reprojects_onto_warped_landmarks(flip: bool, angle: float) -> None:
    """The corrected angles, turned back into a rotation and projected, land on the warped
    2D landmarks (the sign of the in-plane rotation is proven here, not assumed)."""
    size, h = (64, 64), 240
    pose, scale, t = (20.0, -50.0, 10.0), 45.0, np.array([120.0, 115.0, 0.0])
    uv = _fit_image_points(pose, scale, t, h)
    box = (uv[0].min() - 10, uv[1].min() - 10, uv[0].min() - 10 + 100, uv[1].min() - 10 + 100)
    view = View(flip=flip, angle=angle)
    m = crop_matrix(box, size, view=view)
    warped = transform_points(uv, m)
    new_pose = view.pose(*pose)
    model = POINTS * np.array([[-1], [1], [1]]) if flip else POINTS
    r = rotation_from_degrees(*new_pose)
    # fit the remaining similarity (scale + translation) from the rotated model, then compare
    rot2d = (r @ model)[:2] * np.array([[1], [-1]])  # y-down image frame
    a = np.column_stack([rot2d[0], np.ones(rot2d.shape[1])])
    sx, tx = np.linalg.lstsq(a, warped[0], rcond=None)[0]
    b = np.column_stack([rot2d[1], np.ones(rot2d.shape[1])])
    sy, ty = np.linalg.lstsq(b, warped[1], rcond=None)[0]
    fitted = np.stack([sx * rot2d[0] + tx, sy * rot2d[1] + ty])
    assert np.abs(fitted - warped).max() < 1.0  # within a pixel
    if not flip:
        assert new_pose != pytest.approx(pose)


def test_rotation_sign_at_frontal_pose() -> None:
    assert rotate_pose(0, 0, 10, 5) == pytest.approx((0, 0, 5))
    assert augment_pose(10, 30, 5, True, 0.0) == (10, -30, -5)


def test_biwi_and_aflw_conversions() -> None:
    # HopeNet conversion of R_file.T; a pure yaw about the vertical axis gives yaw only
    a = np.radians(30)
    r_file = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    pitch, yaw, roll = biwi_angles(r_file)
    assert (pitch, roll) == pytest.approx((0, 0), abs=1e-9)
    assert abs(yaw) == pytest.approx(30)
    assert aflw_angles(0.1, -0.2, 0.3) == pytest.approx((np.degrees(0.1), np.degrees(-0.2), -np.degrees(0.3)))


@pytest.mark.parametrize("b,count,first,last", [(1, 198, -98.5, 98.5), (2, 99, -98, 98), (3, 66, -97.5, 97.5), (4, 50, -98, 98)])
def test_bin_grid(b: int, count: int, first: float, last: float) -> None:
    g = BinGrid(b)
    assert g.count == count and g.centers[0] == first and g.centers[-1] == last
    np.testing.assert_allclose(g.centers, -g.centers[::-1])  # symmetric: flip reverses bins
    assert g.classify(np.array([first])).item() == 0
    assert g.classify(np.array([-500.0, 500.0])).tolist() == [0, count - 1]
    logits = torch.full((1, count), -1e4)
    logits[0, 3] = 0
    assert g.decode(logits).item() == pytest.approx(g.centers[3])


def test_bad_bin_size_is_named() -> None:
    with pytest.raises(ValueError, match="bin size 0"):
        BinGrid(0)
    with pytest.raises(ValueError, match="bin size 500"):
        BinGrid(500)


def test_padded_region_center_equals_plain_crop() -> None:
    img = RNG.integers(0, 255, (120, 150, 3), dtype=np.uint8)
    box, p = (30.5, 20.0, 95.0, 90.0), 6
    for view in (View(), View(True, 12.0)):
        z = crop(img, box, (48, 40), pad=p, view=view)
        assert z.shape == (48 + 2 * p, 40 + 2 * p, 3)
        np.testing.assert_array_equal(z[p:p + 48, p:p + 40], crop(img, box, (48, 40), view=view))


def test_degenerate_box_is_an_error() -> None:
    with pytest.raises(ValueError, match="degenerate face box"):
        crop_matrix((10, 10, 10.5, 40), (32, 32))


@dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3
    sizes: tuple[int, ...] = (1, 2)


def test_config_unknown_key_raises_and_lists_become_tuples() -> None:
    assert config_from_mapping(_Cfg, {"sizes": [3]}, "section x").sizes == (3,)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr_typo'\] in section x"):
        config_from_mapping(_Cfg, {"lr_typo": 1}, "section x")


def test_atomic_path_leaves_nothing_on_error(tmp_path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_model_heads_and_checkpoint_architecture_check(tmp_path) -> None:
    spec = ModelSpec("resnet18", bin_sizes=(1, 4))
    model = HeadPoseNet(spec)
    out = model(torch.zeros(2, 3, 40, 40))
    assert out["reg"].shape == (2, 3) and out["bin1"].shape == (2, 3, 198) and out["bin4"].shape == (2, 3, 50)
    assert out["reg"].abs().max() <= 99
    path = tmp_path / "m.pt"
    save_checkpoint(path, checkpoint_state("stage1", model, (40, 40)))
    loaded, state = model_from_checkpoint(path)
    assert loaded.spec == spec and state["input_size"] == [40, 40]
    other = HeadPoseNet(ModelSpec("resnet34", bin_sizes=(1, 4)))
    from pipeline.model.checkpoint import load_model_state
    with pytest.raises(ValueError, match="does not match architecture resnet34"):
        load_model_state(other, state["model"], where=str(path))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable hpekd checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_unknown_backbone_is_named() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        ModelSpec("vgg16")


def test_cli_lists_stage_commands() -> None:
    """`hpekd --help` names every command that a dvc.yaml stage runs."""
    import re

    import yaml

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
    used = {m for st in stages.values() for m in re.findall(r"hpekd ([a-z-]+)", st.get("do", st)["cmd"])}
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = set(re.findall(r"^  ([a-z-]+)\s", result.output, flags=re.M))
    assert used and used <= listed, f"commands dvc.yaml runs but `hpekd --help` does not list: {sorted(used - listed)}"
