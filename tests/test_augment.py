"""Pose-correct augmentation: flip/rotation corrections proved by projecting 3D landmarks;
photometric list (strict albumentations 2.0); PoseDataset views, hook and determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.core.angles import project_3ddfa
from pipeline.core.geometry import crop, crop_matrix, transform_points
from pipeline.core.views import View, random_view
from pipeline.data.datasets import PoseDataset
from pipeline.data.loader import EpochSampler, make_loader
from pipeline.data.transforms import AugmentConfig, apply_photometric, geometric, photometric, sample_rng
from pipeline.manifest.rows import RowQuery

RNG = np.random.default_rng(1)
# a generic rigid 3D point cloud and a face-like one (eyes, nose, mouth, ears, chin)
CLOUD = RNG.normal(size=(3, 30))
FACE = np.array([
    (-0.38, 0.25, 0.55), (0.38, 0.25, 0.55), (0.0, -0.05, 0.95), (0.0, -0.45, 0.6),
    (-0.95, 0.05, 0.0), (0.95, 0.05, 0.0), (0.0, -0.85, 0.35), (-0.2, -0.45, 0.55), (0.3, -0.45, 0.5),
]).T
MIRROR = np.array([[-1.0], [1.0], [1.0]])


@pytest.mark.parametrize("points", [CLOUD, FACE], ids=["cloud", "face"])
@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (20.0, -35.0, 10.0), (-40.0, 60.0, -25.0), (70.0, 15.0, 80.0)])
@pytest.mark.parametrize("view", [View(), View(flip=True), View(angle=13.0), View(angle=-15.0), View(True, 9.5), View(True, -14.0)],
                         ids=lambda v: f"flip{int(v.flip)}_rot{v.angle:g}")
def test_corrected_pose_reprojects_onto_transformed_landmarks(points: np.ndarray, pose: tuple, view: View) -> None:
    h_src, out = 300, (96, 96)
    scale, t = 50.0, np.array([140.0, 170.0, 0.0])  # model origin at image (140, 129)
    uv = project_3ddfa(points, *pose, scale=scale, t=t, height=h_src)
    cx, cy = t[0], h_src - 1 - t[1]
    half = 70.0
    # boxes are continuous coordinates (pixel i covers [i, i+1)): pixel (cx, cy) is centered at +0.5
    box = (cx + 0.5 - half, cy + 0.5 - half, cx + 0.5 + half, cy + 0.5 + half)
    moved = transform_points(uv, crop_matrix(box, out, view=view))  # the augmented 2D landmarks
    corrected = view.pose(*pose)
    # the flipped image of model point v is model point diag(-1,1,1)·v seen at the corrected pose
    model = points * MIRROR if view.flip else points
    r = out[1] / (2 * half)
    c = (out[1] - 1) / 2  # the box center (the model origin) lands on the crop center (pixel-index coords)
    expected = project_3ddfa(model, *corrected, scale=scale * r, t=(c, out[0] - 1 - c, 0.0), height=out[0])
    err = np.abs(expected - moved).max()
    assert err < 1.0, f"max reprojection error {err:.3f} px"
    assert err < 1e-6  # it is in fact exact


def test_naive_roll_shift_is_wrong_off_axis() -> None:
    # adding the angle to roll is only exact at pitch = yaw = 0 (docs/design.md §3): the test above would catch it
    pose, view = (30.0, 50.0, 10.0), View(angle=15.0)
    assert not np.allclose(view.pose(*pose), (pose[0], pose[1], pose[2] - 15.0), atol=0.5)
    np.testing.assert_allclose(View(angle=15.0).pose(0.0, 0.0, 10.0), (0.0, 0.0, -5.0), atol=1e-9)


def test_geometric_is_geometry_crop_plus_view_pose() -> None:
    img = RNG.integers(0, 255, (80, 100, 3), dtype=np.uint8)
    v = View(True, 7.0)
    out, pose = geometric(img, (10, 5, 70, 65), (32, 32), v, (10.0, 20.0, 30.0))
    np.testing.assert_array_equal(out, crop(img, (10, 5, 70, 65), (32, 32), view=v))
    assert pose == v.pose(10.0, 20.0, 30.0)


def test_random_view_distribution() -> None:
    rng = np.random.default_rng(0)
    views = [random_view(rng, 0.5, 15.0) for _ in range(2000)]
    flips = np.mean([v.flip for v in views])
    angles = np.array([v.angle for v in views])
    assert 0.45 < flips < 0.55 and angles.min() >= -15 and angles.max() <= 15 and abs(angles.mean()) < 1.0
    assert random_view(rng, 0.0, 0.0) == View()


def test_photometric_strict_list_runs_and_is_seeded() -> None:
    t = photometric(AugmentConfig())
    names = [type(x).__name__ for x in t.transforms]
    assert names == ["OneOf", "OneOf", "MedianBlur", "OneOf", "CoarseDropout"]
    assert [type(x).__name__ for x in t.transforms[0].transforms] == ["HueSaturationValue", "CLAHE", "Equalize", "Solarize"]
    img = RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    outs = [apply_photometric(t, img, sample_rng(0, 0, i)) for i in range(6)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    again = apply_photometric(t, img, sample_rng(0, 0, 3))
    np.testing.assert_array_equal(again, outs[3])
    assert any(not np.array_equal(o, img) for o in outs)
    assert photometric(AugmentConfig(photometric=False)).transforms == []


def test_albumentations_1x_names_are_rejected_under_strict() -> None:
    import albumentations as A

    with pytest.raises(ValueError, match="max_holes"), pytest.warns(UserWarning):
        A.Compose([A.CoarseDropout(max_holes=8)], strict=True)


def test_augment_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="flip_p"):
        AugmentConfig(flip_p=1.5)
    with pytest.raises(ValueError, match="max_angle"):
        AugmentConfig(max_angle=-3)


def test_pose_dataset_items_views_and_hook(tiny_boxes) -> None:
    test = PoseDataset(tiny_boxes, "test", 48, train=False)
    item = test[0]
    assert item["image"].dtype == torch.uint8 and tuple(item["image"].shape) == (3, 48, 48)
    np.testing.assert_allclose(item["target"].numpy(), test.angles[0], atol=1e-5)
    assert not item["flip"] and item["view_id"] == -1
    train = PoseDataset(tiny_boxes, "train", 48, train=True, seed=3)
    assert len(train) == 48 and int(train[(0, 5)]["index"]) == 5
    a, b, c = train[(0, 5)], train[(0, 5)], train[(1, 5)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])  # (seed, epoch, row) decides
    assert not torch.equal(a["image"], c["image"])  # a fresh draw next epoch
    v = View(bool(a["flip"]), float(a["angle"]))
    np.testing.assert_allclose(a["target"].numpy(), v.pose(*train.angles[5]), atol=1e-4)

    seen = []

    def replay(row: int, rng: np.random.Generator):
        seen.append(row)
        return View(True, 10.0), 2

    hooked = PoseDataset(tiny_boxes, "train", 48, train=True, view_fn=replay, augment=AugmentConfig(photometric=False))
    it = hooked[7]
    assert seen == [7] and int(it["view_id"]) == 2 and bool(it["flip"]) and float(it["angle"]) == 10.0
    np.testing.assert_allclose(it["target"].numpy(), View(True, 10.0).pose(*hooked.angles[7]), atol=1e-4)
    plain = PoseDataset(tiny_boxes, "train", 48, train=False, view_fn=lambda row, rng: View(True, 10.0))
    assert torch.equal(plain[7]["image"], it["image"])  # no photometric: same pixels as the replayed view


def test_pose_dataset_bad_input(tiny_boxes, tmp_path) -> None:
    df = pd.read_parquet(tiny_boxes)
    with pytest.raises(ValueError, match="no usable rows .* split 'train'"):
        PoseDataset(df.assign(status="rejected"), "train", 48, train=True)
    with pytest.raises(ValueError, match="no usable rows"):
        PoseDataset(df.iloc[:0], "train", 48, train=True)
    with pytest.raises(ValueError, match="nope"):
        PoseDataset(df, RowQuery("test", ("nope",)), 48, train=False)
    far = df.copy()
    far.loc[far.index[:3], "yaw"] = 120.0
    ds = PoseDataset(far, "train", 48, train=False)
    assert ds.dropped == 3 and len(ds) == 45
    with pytest.raises(ValueError, match="missing.parquet.*not found"):
        PoseDataset(tmp_path / "missing.parquet", "train", 48, train=True)
    broken = df.copy()
    broken.loc[0, "image_path"] = "nowhere.png"
    with pytest.raises(ValueError, match="row 0 .*nowhere.png"):
        PoseDataset(broken, "train", 48, train=False)[0]


def test_epoch_sampler_order_and_shards() -> None:
    s = EpochSampler(10, shuffle=True, seed=1)
    s.set_epoch(0)
    e0 = [i for _, i in s]
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e0) == list(range(10)) and e0 != [i for _, i in e1] and all(e == 1 for e, _ in e1)
    s.set_epoch(0)
    assert [i for _, i in s] == e0
    shards = []
    for r in range(3):
        sh = EpochSampler(10, shuffle=True, seed=1, rank=r, world_size=3)
        assert len(sh) == 4
        shards += [i for _, i in sh]
    assert set(shards) == set(range(10)) and len(shards) == 12
    ev = [EpochSampler(10, shuffle=False, rank=r, world_size=3, pad=False) for r in range(3)]
    assert sorted(i for s_ in ev for _, i in s_) == list(range(10)) and [len(x) for x in ev] == [4, 3, 3]


def test_loader_workers_give_the_same_batches(tiny_boxes) -> None:
    ds = PoseDataset(tiny_boxes, "train", 32, train=True, seed=0)
    batches = []
    for workers in (0, 2):
        loader, sampler = make_loader(ds, 16, train=True, workers=workers, seed=0)
        sampler.set_epoch(1)
        batches.append(next(iter(loader)))
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert torch.equal(batches[0]["index"], batches[1]["index"])


# --------------------------------------------------------------------------- large yaw (90° < |yaw| ≤ 99°)


def _geodesic_deg(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Angle of the rotation between two poses, degrees (independent of the Euler branch)."""
    from pipeline.core.angles import rotation_from_degrees

    r = rotation_from_degrees(*a) @ rotation_from_degrees(*b).T
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


@pytest.mark.parametrize("yaw", [89.0, 91.0, 95.0, 99.0])
@pytest.mark.parametrize("alpha", [-0.01, 0.01, -15.0, 15.0])
def test_rotation_keeps_large_yaw_labels_on_their_branch(yaw: float, alpha: float) -> None:
    from pipeline.core.angles import angles_from_rotation, euler_twin, rotation_from_degrees
    from pipeline.core.views import fit_view

    label = (0.0, yaw, 0.0)
    got = View(angle=alpha).pose(*label)
    # exact: the corrected label is the rotated rotation, whichever Euler triple represents it
    turn = rotation_from_degrees(0.0, 0.0, -alpha)  # a displayed CCW turn is Rz(-alpha) in 3DDFA's sign
    np.testing.assert_allclose(rotation_from_degrees(*got), turn @ rotation_from_degrees(*label), atol=1e-9)
    assert _geodesic_deg(got, label) == pytest.approx(abs(alpha), abs=1e-6)
    # the branch nearest the label: yaw moves by at most |alpha| and stays on its side of 90°
    assert abs(got[1] - yaw) <= abs(alpha) + 1e-9
    twin = euler_twin(*got)
    assert np.abs(np.subtract(got, label)).sum() <= np.abs(np.subtract(twin, label)).sum()
    assert angles_from_rotation(rotation_from_degrees(*got), reference=label) == pytest.approx(got)
    if abs(alpha) < 0.1:
        # continuous: pitch and roll move by about |alpha| / |cos(yaw)| (gimbal lock amplifies)
        bound = abs(alpha) * 1.02 / abs(np.cos(np.radians(yaw)))
        assert np.abs(np.subtract(got, label)).max() <= bound
    # what the old |yaw| < 90 branch gave: (0, 95, 0) rotated by 0.01° was (−179.89, 85.0, −179.89)
    if (yaw, alpha) == (95.0, 0.01):
        np.testing.assert_allclose(got, (0.114, 95.0, 0.115), atol=2e-3)
    in_range = max(abs(a) for a in got) <= 99.0
    fitted = fit_view(View(True, alpha), label)
    if in_range:  # e.g. yaw 89 rotated by 15°: (∓86.1, 75.0, ∓86.3), exact and inside the bins
        assert fitted == View(True, alpha)
    else:  # yaw 91..99 rotated by 15° (and yaw 99 by any angle) leave ±99: keep the flip, no rotation
        assert yaw >= 91 and (abs(alpha) == 15.0 or yaw == 99.0) and fitted == View(True, 0.0)
        assert fitted.pose(*label) == (0.0, -yaw, -0.0)


def test_fit_view_is_idempotent_and_keyed_views_use_it() -> None:
    from pipeline.core.views import fit_view, views_array, views_for

    labels = np.array([[0.0, 99.0, 0.0], [10.0, 20.0, 5.0], [-3.0, -97.0, 4.0]])
    ids = ["a/x.jpg#0", "a/y.jpg#0", "a/z.jpg#0"]
    plain = views_array(ids, 6, seed=1)
    fitted = views_array(ids, 6, seed=1, poses=labels)
    for i, sid in enumerate(ids):
        for v, view in enumerate(views_for(sid, 6, seed=1)):
            want = fit_view(view, tuple(labels[i]))
            assert fit_view(want, tuple(labels[i])) == want
            assert tuple(fitted[i, v]) == (float(want.flip), want.angle)
            assert max(abs(a) for a in want.pose(*labels[i])) <= 99.0
    np.testing.assert_array_equal(fitted[1], plain[1])  # yaw 20: every rotation kept
    assert (fitted[0, 1:, 1] == 0).any() and not np.array_equal(fitted[0], plain[0])  # yaw 99: some dropped
    with pytest.raises(ValueError, match=r"poses must be \[N, 3\] for 3 samples"):
        views_array(ids, 2, 0, poses=labels[:2])


def test_stage1_sample_at_yaw_95_every_rotation(tmp_path) -> None:
    """A training row at yaw 95° under every rotation in [−15°, 15°]: the target is the exact
    rotated label on the label's branch (yaw within |α|, rotation within |α| < 16° of the
    label, all angles inside ±99°), or the rotation is skipped (target = label, image
    unrotated, reported angle 0). Pitch and roll themselves move by ≈ 11.5°/° here."""
    from tests.conftest import make_tiny_dataset

    path = make_tiny_dataset(tmp_path, n_train=1, n_test=1)
    df = pd.read_parquet(path)
    df.loc[0, ["pitch", "yaw", "roll"]] = np.array([0.0, 95.0, 0.0], dtype=np.float32)
    df.to_parquet(path, index=False)
    label = (0.0, 95.0, 0.0)
    kept = skipped = 0
    for alpha in np.linspace(-15.0, 15.0, 61):
        ds = PoseDataset(path, "train", 32, train=True, augment=AugmentConfig(photometric=False),
                         view_fn=lambda row, rng, a=float(alpha): View(False, a))
        item = ds[0]
        target = tuple(float(v) for v in item["target"])
        assert max(abs(v) for v in target) <= 99.0
        assert abs(target[1] - 95.0) <= 16.0 and _geodesic_deg(target, label) <= abs(alpha) + 1e-3 < 16.0
        if float(item["angle"]) == 0.0 and alpha != 0.0:
            skipped += 1
            np.testing.assert_allclose(target, label, atol=1e-5)
            ref = PoseDataset(path, "train", 32, train=False)[0]
            assert torch.equal(item["image"], ref["image"])
        else:
            kept += 1
            assert float(item["angle"]) == pytest.approx(alpha, abs=1e-6)
            np.testing.assert_allclose(target, View(False, float(alpha)).pose(*label), atol=1e-4)
            if abs(alpha) <= 1.25:
                assert np.abs(np.subtract(target, label)).max() < 16.0
    # yaw stays ≤ 99 up to |α| ≈ 7.4°: those rotations are kept, larger ones skipped
    assert kept == 29 and skipped == 32
