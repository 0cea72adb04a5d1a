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
    # adding the angle to roll is only exact at pitch = yaw = 0 (DESIGN §3): the test above would catch it
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
        PoseDataset(df, "test", 48, train=False, datasets=["nope"])
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
