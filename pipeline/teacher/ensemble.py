"""The convolutional ensemble (docs/design.md §5, paper eq. 5–6), computed on the device.

A sample is warped ONCE on the CPU into the padded region Z (``(h+2p) × (w+2p)``, uint8,
:func:`pipeline.core.geometry.crop` with ``pad=p``). Here a batch of Z tensors is moved to the
device, normalised once, and the ``A = (2p/s + 1)²`` crops of ``h × w`` at offsets
``(s·i, s·j)``, ``0 ≤ i, j ≤ 2p/s`` are cut as strided *views* of that one tensor
(``Tensor.unfold``): no per-crop CPU work and no crop computed twice. The crops go through the
network in large chunks (bf16 autocast + channels-last on CUDA, fp32 on CPU), the softmax of
one head is averaged over the A crops per angle (eq. 6): ``[B, 3, Q]`` float32.

Crop ``a = i·n + j`` (``n = 2p/s + 1``) has offset ``(x, y) = (s·j, s·i)``: row-major over
(y, x), see :func:`crop_offsets`. ``p = 0`` is the single network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from pipeline.core.images import normalize
from pipeline.model.network import LABEL_HEAD


def validate_ensemble(p: int, s: int) -> int:
    """Check (p, s) and return A = (2p/s + 1)²."""
    if int(p) != p or p < 0:
        raise ValueError(f"ensemble padding p={p!r} must be an integer >= 0")
    if int(s) != s or s < 1:
        raise ValueError(f"ensemble stride s={s!r} must be an integer >= 1")
    if p % s != 0:
        raise ValueError(
            f"ensemble padding p={p} must be a multiple of the stride s={s} "
            f"(offsets s·i must reach 2p exactly); e.g. p={p - p % s or s} or s dividing {p}"
        )
    n = 2 * int(p) // int(s) + 1
    return n * n


def ensemble_size(p: int, s: int) -> int:
    """A = (2p/s + 1)², the number of crops of the (p, s) ensemble."""
    return validate_ensemble(p, s)


def crop_offsets(p: int, s: int) -> list[tuple[int, int]]:
    """The A crop offsets ``(x, y)`` into Z, in the order the crops are evaluated."""
    validate_ensemble(p, s)
    steps = range(0, 2 * p + 1, s)
    return [(x, y) for y in steps for x in steps]


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cut_crops(z: torch.Tensor, size: Sequence[int], p: int, s: int) -> torch.Tensor:
    """Views [B, n, n, 3, h, w] of normalised Z [B, 3, h+2p, w+2p] (no copy)."""
    h, w = int(size[0]), int(size[1])
    if z.shape[-2] != h + 2 * p or z.shape[-1] != w + 2 * p:
        raise ValueError(
            f"Z has spatial shape {tuple(z.shape[-2:])}, expected {(h + 2 * p, w + 2 * p)} "
            f"for input {h}x{w} and p={p}"
        )
    # unfold(dim, size, step): [B, 3, n_y, n_x, h, w] as a strided view
    v = z.unfold(2, h, s).unfold(3, w, s)
    return v.permute(0, 2, 3, 1, 4, 5)


def _check_z_batch(z_batch: torch.Tensor) -> torch.Tensor:
    if z_batch.dim() != 4:
        raise ValueError(f"Z batch must be 4-D [B, H, W, 3] uint8, got shape {tuple(z_batch.shape)}")
    return z_batch


# crop_probs and ensemble_probs take 9 parameters: the input (model, z_batch), the ensemble
# (size, p, s) and four keyword-only pass settings with defaults, named at each call (teacher
# job, ensemble grid, predictor). Kept flat like a torch functional call: a settings record
# would be built by each caller for its one call and group nothing they share.
@torch.no_grad()
def crop_probs(
    model: torch.nn.Module,
    z_batch: torch.Tensor,
    size: Sequence[int],
    p: int,
    s: int,
    *,
    head: str = LABEL_HEAD,
    chunk: int = 0,
    device: torch.device | str | None = None,
    amp: bool = True,
) -> torch.Tensor:
    """Softmax of ``head`` for every crop: float32 [B, A, 3, Q] on the model's device.

    ``z_batch``: uint8 [B, h+2p, w+2p, 3] (HWC, as built by :func:`pipeline.core.geometry.crop`)
    or [B, 3, h+2p, w+2p], on any device. ``chunk``: crops per forward pass (0 = all at once).
    """
    A = validate_ensemble(p, s)
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    z = _check_z_batch(z_batch).to(device, non_blocking=True)
    zf = normalize(z)  # [B, 3, H, W] float32, normalised once for all A crops
    views = cut_crops(zf, size, p, s)  # [B, n, n, 3, h, w]
    B = views.shape[0]
    h, w = views.shape[-2:]
    total = B * A
    step = total if chunk <= 0 else int(chunk)
    out: torch.Tensor | None = None
    channels_last = device.type == "cuda"
    if channels_last:
        views = views.permute(0, 1, 2, 4, 5, 3)  # [B, n, n, h, w, 3]: gathering gives NHWC memory
    for start in range(0, total, step):
        stop = min(total, start + step)
        # gather crops [start, stop) from the strided view: one copy, straight into the batch
        b0, b1 = start // A, (stop - 1) // A + 1
        lo, hi = start - b0 * A, stop - b0 * A
        if channels_last:
            x = views[b0:b1].reshape((b1 - b0) * A, h, w, 3)[lo:hi].permute(0, 3, 1, 2)  # channels_last
        else:
            x = views[b0:b1].reshape((b1 - b0) * A, 3, h, w)[lo:hi]
        with _autocast(device, amp):
            logits = model(x)[head]
        probs = torch.softmax(logits.float(), dim=-1)
        if out is None:
            out = torch.empty((total, *probs.shape[1:]), dtype=torch.float32, device=device)
        out[start:stop] = probs
    assert out is not None
    return out.view(B, A, *out.shape[1:])


@torch.no_grad()
def ensemble_probs(  # 9 parameters: see crop_probs
    model: torch.nn.Module,
    z_batch: torch.Tensor,
    size: Sequence[int],
    p: int,
    s: int,
    *,
    head: str = LABEL_HEAD,
    chunk: int = 0,
    device: torch.device | str | None = None,
    amp: bool = True,
) -> torch.Tensor:
    """Eq. 6: the mean over the A crops of the softmax of ``head``; float32 [B, 3, Q].

    The model must be in eval mode (the caller's job; the teacher job and the predictor do it).
    """
    probs = crop_probs(model, z_batch, size, p, s, head=head, chunk=chunk, device=device, amp=amp)
    return probs.mean(dim=1)


def subset_mean(probs_pmax: torch.Tensor, p_max: int, p: int, s: int) -> torch.Tensor:
    """The (p, s) ensemble from the crop probabilities of a (p_max, 1) pass.

    ``probs_pmax``: [B, (2·p_max+1)², 3, Q] from :func:`crop_probs` with ``s = 1``. The (p, s)
    crops are the offsets ``(p_max − p + s·i, p_max − p + s·j)`` of the larger Z.
    """
    validate_ensemble(p, s)
    if p > p_max:
        raise ValueError(f"p={p} exceeds p_max={p_max} of the pass")
    n = 2 * p_max + 1
    B = probs_pmax.shape[0]
    grid = probs_pmax.view(B, n, n, *probs_pmax.shape[2:])
    o = p_max - p
    sub = grid[:, o : o + 2 * p + 1 : s, o : o + 2 * p + 1 : s]
    return sub.mean(dim=(1, 2))
