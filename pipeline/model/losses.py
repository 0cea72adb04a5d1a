"""Training losses (docs/design.md §4, paper eq. 4 and eq. 7).

Both losses take the model's raw outputs (``HeadPoseNet.forward`` dicts or one head's logits)
and target angles in degrees ``[B, 3]`` (pitch, yaw, roll) and return ``(loss, parts)``:
``loss`` a scalar tensor to back-propagate, ``parts`` a dict of detached scalar tensors for
logging (the training engine averages them per epoch). Everything is computed in float32,
also when the forward pass ran under bf16 autocast.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from pipeline.core.bins import BinGrid


def _ce_sum(
    logits: torch.Tensor, target_angles: torch.Tensor, grid: BinGrid, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Σ over the three angles of the cross-entropy against the bin of the target, averaged over
    the B rows of the batch. ``mask`` (bool [B]): only these rows contribute, still divided by B
    (their targets may be NaN elsewhere)."""
    logits = logits.float()
    if mask is None:
        classes = grid.classify(target_angles)  # [B, 3] long
        return sum(F.cross_entropy(logits[:, a], classes[:, a]) for a in range(3))  # type: ignore[return-value]
    mask = mask.to(device=logits.device, dtype=torch.bool).reshape(-1)
    if mask.shape[0] != logits.shape[0]:
        raise ValueError(f"labelled mask has {mask.shape[0]} rows for a batch of {logits.shape[0]}")
    # unmasked targets may be NaN: give them any class, then zero their terms
    classes = grid.classify(torch.where(mask[:, None], target_angles, torch.zeros_like(target_angles)))
    weight = mask.to(logits.dtype)
    return sum((F.cross_entropy(logits[:, a], classes[:, a], reduction="none") * weight).sum() / logits.shape[0]
               for a in range(3))  # type: ignore[return-value]


def stage1_loss(
    outputs: Mapping[str, torch.Tensor],
    target_angles: torch.Tensor,
    grids: Mapping[str, BinGrid],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 4: ``(MAE(reg) + Σ_heads Σ_angles CE) / (M + 1)``, M = number of RvC heads.

    ``outputs``: ``{"reg": [B, 3] degrees, "bin1": [B, 3, q1] logits, ...}`` as returned by
    :class:`pipeline.model.network.HeadPoseNet`; ``grids``: ``ModelSpec.grids`` (head key → grid).
    ``MAE(reg)`` is the mean absolute error in degrees over the batch and the three angles
    (eq. 1); each CE is the batch mean, summed over the three angles. The class target of an
    angle is ``BinGrid.classify`` (the bin containing it, clamped). A model without the
    regression head divides by M.

    Parts: ``mae_reg`` (if present), ``ce_<head>`` per head (summed over angles), ``loss``.
    """
    target = target_angles.float()
    terms: list[torch.Tensor] = []
    parts: dict[str, torch.Tensor] = {}
    if "reg" in outputs:
        mae = (outputs["reg"].float() - target).abs().mean()
        terms.append(mae)
        parts["mae_reg"] = mae.detach()
    heads = [k for k in grids if k in outputs]
    if len(heads) != len(grids):
        missing = sorted(set(grids) - set(outputs))
        raise ValueError(f"model outputs lack the RvC head(s) {missing} (outputs: {sorted(outputs)})")
    for key in heads:
        ce = _ce_sum(outputs[key], target, grids[key])
        terms.append(ce)
        parts[f"ce_{key}"] = ce.detach()
    total = torch.stack(terms).sum() / len(terms)
    parts["loss"] = total.detach()
    return total, parts


def student_loss(
    logits_bin1: torch.Tensor,
    target_angles: torch.Tensor,
    teacher_probs: torch.Tensor | None,
    grid: BinGrid,
    ce_weight: float = 0.05,
    kd_weight: float = 1.0,
    labelled: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7: ``(ce_weight · Σ_angles CE(gt, out) + kd_weight · Σ_angles KL(teacher ‖ softmax(out))) / 2``
    (``kd_weight`` = 1 is the paper; 0 is the control student trained twice without distillation).

    ``logits_bin1``: [B, 3, Q] logits of the student's one RvC head; ``target_angles``: [B, 3]
    ground truth in degrees (classified with ``grid``; NaN allowed on unlabelled rows);
    ``teacher_probs``: [B, 3, Q] ensemble distributions (eq. 6, e.g. float16 from the label
    store; rows sum to 1, zeros allowed — ``0·log 0`` counts as 0), or ``None`` with
    ``kd_weight`` 0 (no soft target: the CE term alone). ``labelled``: bool [B]
    (default: every row), the rows with ground truth.

    Normalisation: the loss is the mean over the B rows of each row's eq. 7 loss, and an
    unlabelled row's loss has no cross-entropy part. So the CE term is Σ_labelled CE / B (not
    / n_labelled: a batch with few labelled rows does not blow their weight up), the KL term
    Σ_rows KL / B (``batchmean``); both are summed over the three angles. With every row
    labelled this is exactly eq. 7.

    Parts: ``ce`` and ``kl`` (each summed over angles, unweighted) and ``loss``.
    """
    if teacher_probs is None:  # no soft target (the student without distillation): no KL term
        if kd_weight:
            raise ValueError(f"kd_weight {kd_weight!r} needs teacher probabilities; without them it must be 0")
        ce = _ce_sum(logits_bin1.float(), target_angles.float(), grid, mask=labelled)
        total = ce_weight * ce / 2
        zero = torch.zeros((), device=ce.device)
        return total, {"ce": ce.detach(), "kl": zero, "loss": total.detach()}
    if logits_bin1.shape != teacher_probs.shape:
        raise ValueError(
            f"student logits {tuple(logits_bin1.shape)} and teacher probabilities "
            f"{tuple(teacher_probs.shape)} differ in shape (expected [B, 3, {grid.count}] both)"
        )
    logits = logits_bin1.float()
    target = target_angles.float()
    ce = _ce_sum(logits, target, grid, mask=labelled)
    logp = F.log_softmax(logits, dim=-1)
    teacher = teacher_probs.float()
    kl = sum(F.kl_div(logp[:, a], teacher[:, a], reduction="batchmean") for a in range(3))
    total = (ce_weight * ce + kd_weight * kl) / 2
    return total, {"ce": ce.detach(), "kl": kl.detach(), "loss": total.detach()}  # type: ignore[union-attr]
