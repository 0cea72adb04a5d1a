"""The device-side convolutional ensemble (docs/design.md §5) against slow CPU references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.core.geometry import crop
from pipeline.core.images import normalize, read_image
from pipeline.core.views import View, views_array, views_for
from pipeline.model.network import HeadPoseNet, ModelSpec
from pipeline.teacher.ensemble import crop_offsets, crop_probs, ensemble_probs, ensemble_size, subset_mean

SIZE = (32, 32)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny convolutions: one thread is faster than two fighting over 2 shared cores
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net() -> HeadPoseNet:
    torch.manual_seed(0)
    m = HeadPoseNet(ModelSpec("resnet18"))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
    return m.eval()


@pytest.fixture(scope="module")
def sample(tiny_boxes):
    df = pd.read_parquet(tiny_boxes)
    rows = df.iloc[:3]
    imgs = [read_image(f"{r.root}/{r.image_path}") for r in rows.itertuples()]
    boxes = [np.array([r.x1, r.y1, r.x2, r.y2], dtype=np.float64) for r in rows.itertuples()]
    return imgs, boxes


def test_sizes_and_offsets():
    assert ensemble_size(0, 1) == 1 and ensemble_size(15, 5) == 49 and ensemble_size(2, 1) == 25
    assert crop_offsets(0, 3) == [(0, 0)]
    offs = crop_offsets(2, 2)
    assert len(offs) == 9 and offs[0] == (0, 0) and offs[1] == (2, 0) and offs[-1] == (4, 4)
    for p, s in [(4, 2), (6, 3), (3, 1)]:
        assert len(crop_offsets(p, s)) == (2 * p // s + 1) ** 2


def test_p_not_multiple_of_s_is_clear_error(net):
    with pytest.raises(ValueError, match=r"p=5 must be a multiple of the stride s=2"):
        ensemble_size(5, 2)
    with pytest.raises(ValueError, match=r"p=3 must be a multiple of the stride s=2"):
        ensemble_probs(net, torch.zeros(1, 38, 38, 3, dtype=torch.uint8), SIZE, 3, 2)
    with pytest.raises(ValueError, match="s=0"):
        ensemble_size(2, 0)


def _single(net, x_uint8: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(net(normalize(torch.from_numpy(x_uint8)[None]))["bin1"].float(), -1)[0]


def test_p0_is_the_single_network(net, sample):
    imgs, boxes = sample
    z = torch.from_numpy(np.stack([crop(im, b, SIZE, pad=0) for im, b in zip(imgs, boxes)]))
    got = ensemble_probs(net, z, SIZE, 0, 1)
    assert got.shape == (3, 3, 198) and got.dtype == torch.float32
    for i, (im, b) in enumerate(zip(imgs, boxes)):
        torch.testing.assert_close(got[i], _single(net, crop(im, b, SIZE)), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.sum(-1), torch.ones(3, 3))


def _shifted_box_reference(net, img, box, view: View, p: int, s: int) -> torch.Tensor:
    """Slow reference: crop every SHIFTED box from the original image (pad 0), one at a time."""
    x1, y1, x2, y2 = box
    h, w = SIZE
    rx, ry = w / (x2 - x1), h / (y2 - y1)
    a = np.radians(view.angle)
    turn = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) @ np.diag([-1.0 if view.flip else 1.0, 1.0])
    acc = []
    for dx, dy in crop_offsets(p, s):
        # output-space shift (dx - p, dy - p) = S·turn·d  →  source-space box shift d
        d = turn.T @ np.array([(dx - p) / rx, (dy - p) / ry])
        shifted = (x1 + d[0], y1 + d[1], x2 + d[0], y2 + d[1])
        acc.append(_single(net, crop(img, shifted, SIZE, pad=0, view=view)))
    return torch.stack(acc).mean(0)


@pytest.mark.parametrize("p,s", [(2, 1), (4, 4)])
def test_batched_equals_shifted_box_reference(net, sample, p, s):
    imgs, boxes = sample
    views = [View(), View(flip=True, angle=11.5), View(flip=False, angle=-7.0)]
    zs = np.stack([crop(im, b, SIZE, pad=p, view=v) for im, b, v in zip(imgs, boxes, views)])
    got = ensemble_probs(net, torch.from_numpy(zs), SIZE, p, s, chunk=10)
    for i in range(3) if p == 4 else (0, 1):
        ref = _shifted_box_reference(net, imgs[i], boxes[i], views[i], p, s)
        torch.testing.assert_close(got[i], ref, atol=2e-4, rtol=2e-2)


def test_chunking_and_layout_do_not_change_result(net, sample):
    imgs, boxes = sample
    z = torch.from_numpy(np.stack([crop(im, b, SIZE, pad=2) for im, b in zip(imgs, boxes)]))
    a = ensemble_probs(net, z, SIZE, 2, 1, chunk=0)
    b = ensemble_probs(net, z, SIZE, 2, 1, chunk=7)
    c = ensemble_probs(net, z.permute(0, 3, 1, 2).contiguous(), SIZE, 2, 1, chunk=25)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a, c, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        ensemble_probs(net, z, SIZE, 1, 1)


def test_subset_mean_of_pmax_pass_equals_direct_ensemble(net, sample):
    imgs, boxes = sample
    p_max = 4
    zmax = torch.from_numpy(np.stack([crop(im, b, SIZE, pad=p_max) for im, b in zip(imgs, boxes)]))
    probs = crop_probs(net, zmax, SIZE, p_max, 1)
    assert probs.shape == (3, 81, 3, 198)
    for p, s in [(0, 1), (2, 1), (2, 2), (4, 2), (3, 3), (4, 4)]:
        z = torch.from_numpy(np.stack([crop(im, b, SIZE, pad=p) for im, b in zip(imgs, boxes)]))
        torch.testing.assert_close(subset_mean(probs, p_max, p, s), ensemble_probs(net, z, SIZE, p, s),
                                   atol=1e-6, rtol=1e-4)


def test_views_are_keyed_and_replayable():
    v1 = views_for("a/b#0", 5, seed=3)
    assert v1[0] == View() and v1 == views_for("a/b#0", 5, seed=3)
    assert views_for("a/b#0", 3, seed=3) == v1[:3]  # independent of V
    assert v1 != views_for("a/b#0", 5, seed=4) and v1 != views_for("a/c#0", 5, seed=3)
    many = [v for i in range(200) for v in views_for(f"s{i}", 2, 0)[1:]]
    assert all(-15 <= v.angle <= 15 for v in many) and 60 < sum(v.flip for v in many) < 140
    arr = views_array(["a/b#0"], 5, 3)
    assert arr.dtype == np.float32 and arr.shape == (1, 5, 2)
    assert [View(bool(f), float(a)) for f, a in arr[0]] == v1  # stored float32 replays exactly
