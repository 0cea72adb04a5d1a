"""Eq. 2, eq. 4 and eq. 7 against values computed by hand; the bin grids of docs/design.md §4."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.core.bins import BinGrid
from pipeline.model.losses import stage1_loss, student_loss


@pytest.mark.parametrize(
    "b, count, first, last",
    [(1, 198, -98.5, 98.5), (2, 99, -98.0, 98.0), (3, 66, -97.5, 97.5), (4, 50, -98.0, 98.0)],
)
def test_bin_grids(b: int, count: int, first: float, last: float) -> None:
    g = BinGrid(b)
    assert g.count == count and len(g.centers) == count
    assert g.centers[0] == pytest.approx(first) and g.centers[-1] == pytest.approx(last)
    np.testing.assert_allclose(np.diff(g.centers), b)
    low = -count * b / 2
    # edges: an angle exactly on the lower edge of bin i belongs to bin i; clamped outside
    edges = low + b * np.arange(count)
    np.testing.assert_array_equal(g.classify(edges), np.arange(count))
    np.testing.assert_array_equal(g.classify(edges + b - 1e-6), np.arange(count))
    assert g.classify(np.array([-1000.0, 1000.0])).tolist() == [0, count - 1]
    t = torch.tensor([low, 0.0, -low - 1e-4])
    assert g.classify(t).tolist() == [0, count // 2, count - 1]


def test_decode_eq2_by_hand() -> None:
    g = BinGrid(99)  # two bins, centers -49.5 and 49.5
    np.testing.assert_allclose(g.centers, [-49.5, 49.5])
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    assert g.decode(logits).item() == pytest.approx(-49.5 / 4 + 49.5 * 3 / 4)


def test_stage1_loss_eq4_by_hand() -> None:
    grids = {"bin99": BinGrid(99), "bin66": BinGrid(66)}  # 2 and 3 bins
    target = torch.tensor([[-10.0, 20.0, 60.0]])  # classes: b99 → 0,1,1 ; b66 → 1,1,2
    reg = torch.tensor([[-12.0, 25.0, 60.0]])  # |err| = 2, 5, 0 → MAE 7/3
    l99 = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    l66 = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    loss, parts = stage1_loss({"reg": reg, "bin99": l99, "bin66": l66}, target, grids)
    ce99 = -math.log(0.5) - math.log(1 / (1 + math.e)) - math.log(math.e**2 / (1 + math.e**2))
    ce66 = -math.log(1 / 3) - math.log(math.e / (2 + math.e)) - math.log(1 / (2 + math.e))
    mae = 7 / 3
    assert parts["mae_reg"].item() == pytest.approx(mae)
    assert parts["ce_bin99"].item() == pytest.approx(ce99, rel=1e-6)
    assert parts["ce_bin66"].item() == pytest.approx(ce66, rel=1e-6)
    assert loss.item() == pytest.approx((mae + ce99 + ce66) / 3, rel=1e-6)  # M = 2 heads → /(M+1)
    # without the regression head: divide by M
    loss2, _ = stage1_loss({"bin99": l99, "bin66": l66}, target, grids)
    assert loss2.item() == pytest.approx((ce99 + ce66) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="bin66"):
        stage1_loss({"reg": reg, "bin99": l99}, target, grids)


def test_stage1_loss_backprops_in_bf16() -> None:
    grids = {"bin1": BinGrid(1)}
    logits = torch.randn(4, 3, 198, dtype=torch.bfloat16, requires_grad=True)
    loss, _ = stage1_loss({"bin1": logits, "reg": torch.zeros(4, 3)}, torch.zeros(4, 3), grids)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()


def test_student_loss_eq7_by_hand() -> None:
    g = BinGrid(99)  # 2 bins
    target = torch.tensor([[-10.0, 20.0, 60.0]])  # classes 0, 1, 1
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [math.log(3.0), 0.0]]])
    teacher = torch.tensor([[[0.5, 0.5], [0.0, 1.0], [0.25, 0.75]]], dtype=torch.float16)
    loss, parts = student_loss(logits, target, teacher, g)
    # out probs: (1/2,1/2), (1/4,3/4), (3/4,1/4)
    ce = -math.log(0.5) - math.log(0.75) - math.log(0.25)
    kl = 0.0 + (1.0 * math.log(1.0 / 0.75)) + (0.25 * math.log(0.25 / 0.75) + 0.75 * math.log(0.75 / 0.25))
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert parts["kl"].item() == pytest.approx(kl, rel=1e-5)  # teacher zero contributes 0, not NaN
    assert loss.item() == pytest.approx((0.05 * ce + kl) / 2, rel=1e-5)
    # batchmean: duplicating the batch leaves the loss unchanged
    loss_b, _ = student_loss(logits.repeat(2, 1, 1), target.repeat(2, 1), teacher.repeat(2, 1, 1), g)
    assert loss_b.item() == pytest.approx(loss.item(), rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        student_loss(logits, target, teacher[..., :1], g)
