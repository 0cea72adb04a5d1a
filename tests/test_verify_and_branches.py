"""Two ways a correct pipeline used to look wrong: the Euler branch of a rotated label near
|yaw| = 90° (it must be continuous in the rotation angle), and `hpekd labels verify` on a
fresh store whose views had a rotation dropped to keep a label within ±99° (it must pass)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner

from pipeline.core.angles import _turn, angle_distance, angles_from_rotation, rotate_pose, rotation_from_degrees
from pipeline.core.config import default_config
from pipeline.core.views import draw_view, views_array
from pipeline.teacher.job import TeacherLabelsConfig, run_teacher_labels
from pipeline.teacher.labelread import verify
from stages.cli import main
from tests.conftest import make_tiny_dataset
from tests.helpers.teacher import make_teacher_checkpoint


def _dense(pose: tuple[float, float, float], angle: float, step: float = 0.005) -> tuple[float, float, float]:
    """The label followed from angle 0 in tiny steps (the definition of the continuous branch)."""
    r0 = rotation_from_degrees(*pose)
    cur = pose
    n = int(np.ceil(abs(angle) / step))
    for k in range(1, n + 1):
        cur = angles_from_rotation(_turn(angle * k / n) @ r0, reference=cur)
    return cur


@pytest.mark.parametrize("angle", [10.9, 10.95, 11.0, 15.0])
def test_rotated_label_stays_on_its_branch_near_yaw_90(angle: float) -> None:
    pose = (-40.3, -83.4, 15.4)
    got = rotate_pose(*pose, angle)
    np.testing.assert_allclose(got, _dense(pose, angle), atol=1e-6)
    np.testing.assert_allclose(rotation_from_degrees(*got), _turn(angle) @ rotation_from_degrees(*pose), atol=1e-12)
    assert all(abs(a) <= 99 for a in got), "the continuous label stays in range: the rotation is not dropped"


def test_rotated_label_has_no_jump_in_the_angle() -> None:
    """Before: nearest-to-the-unrotated-label jumped from (53.0, −81.6, −78.4) to (−127.3, −98.3,
    101.9) at α ≈ 10.92°."""
    pose = (-40.3, -83.4, 15.4)
    angles = np.arange(10.80, 11.10, 0.01)
    labels = [rotate_pose(*pose, float(a)) for a in angles]
    steps = [angle_distance(a, b) for a, b in zip(labels, labels[1:])]
    assert max(steps) < 1.0, max(steps)
    np.testing.assert_allclose(rotate_pose(*pose, 10.97), (52.9, -81.6, -78.3), atol=0.1)


def test_small_yaw_labels_take_the_nearest_triple_as_before() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        pose = tuple(float(v) for v in rng.uniform([-60, -55, -60], [60, 55, 60]))
        angle = float(rng.uniform(-15, 15))
        r = _turn(angle) @ rotation_from_degrees(*pose)
        np.testing.assert_allclose(rotate_pose(*pose, angle), angles_from_rotation(r, reference=pose), atol=1e-9)


# ----------------------------------------------------------------------------- labels verify


@pytest.fixture(scope="module")
def fresh_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store the job builds from a table where some views must drop their rotation."""
    root = tmp_path_factory.mktemp("verify")
    boxes = make_tiny_dataset(root, n_train=24, n_test=4, size=48, seed=3)
    df = pd.read_parquet(boxes)
    train = df.index[df["split"] == "train"]
    df.loc[train[:12], "yaw"] = np.float32(97.5)  # 97.5° + a rotation of up to 15° leaves ±99° for many views
    df.loc[train[:12], "pitch"] = np.float32(20.0)
    df.to_parquet(boxes, index=False)
    ck = make_teacher_checkpoint(root / "teacher.pt", size=32)
    cfg = default_config(TeacherLabelsConfig, "teacher_labels", p=0, s=1, views=4, shard_rows=8, chunk_rows=4, batch_size=8, workers=0,
                              loader_workers=0, device="cpu")
    out = root / "teacher.zarr"
    run_teacher_labels(cfg, str(ck), str(boxes), str(out))
    return out, boxes


def test_fresh_store_with_dropped_rotations_verifies_clean(fresh_store: tuple[Path, Path]) -> None:
    store, boxes = fresh_store
    g = zarr.open_group(str(store), mode="r")
    views = np.asarray(g["views"][:])
    ids = [bytes(r).rstrip(b"\0").decode() for r in np.asarray(g["sample_id"][:])]
    raw = views_array(ids, 4, 0, 0.5, 15.0)
    dropped = (views[..., 1] == 0) & (raw[..., 1] != 0)
    assert dropped.sum() >= 3, "the fixture must contain views whose rotation the job dropped"
    assert verify(str(store), str(boxes)) == []
    assert verify(str(store)) == []
    for args in (["labels", "verify", str(store), "--boxes", str(boxes)], ["labels", "verify", str(store)]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output


def _copy(store: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(store, to)
    return to


def _set_view(store: Path, row: int, view: int, value: tuple[float, float]) -> None:
    """Change one stored view and re-record the array's digest, as a writer that drew views
    wrongly would have: only the regeneration can tell."""
    from pipeline.teacher import labelstore

    g = zarr.open_group(str(store), mode="r+")
    views = np.asarray(g["views"][:])
    views[row, view] = value
    g["views"][:] = views
    content = dict(g.attrs["content"])
    content["views_sha256"] = labelstore._sha(views)
    g.attrs["content"] = content


def test_store_with_one_view_changed_fails_verify(fresh_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, boxes = fresh_store
    ids = [bytes(r).rstrip(b"\0").decode() for r in np.asarray(zarr.open_group(str(store), mode="r")["sample_id"][:])]
    row = 20  # a row whose label (|yaw| small) keeps every rotation
    v = draw_view(ids[row], 1, 0)
    bad = _copy(store, tmp_path / "bad.zarr")
    _set_view(bad, row, 1, (float(v.flip), v.angle + 1.0))
    assert any(f"first at row {row}" in p for p in verify(str(bad), str(boxes)))
    assert any(f"first at row {row}" in p for p in verify(str(bad)))
    res = CliRunner().invoke(main, ["labels", "verify", str(bad), "--boxes", str(boxes)])
    assert res.exit_code == 1 and "views differ" in res.output


def test_dropping_a_rotation_the_label_keeps_is_caught_with_the_boxes(fresh_store: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """Without the labels a dropped rotation is plausible; with them it must be exactly the job's."""
    store, boxes = fresh_store
    ids = [bytes(r).rstrip(b"\0").decode() for r in np.asarray(zarr.open_group(str(store), mode="r")["sample_id"][:])]
    row = 20
    v = draw_view(ids[row], 1, 0)
    assert v.angle != 0
    bad = _copy(store, tmp_path / "bad2.zarr")
    _set_view(bad, row, 1, (float(v.flip), 0.0))
    assert verify(str(bad)) == []
    assert any("labels of the boxes table" in p for p in verify(str(bad), str(boxes)))
