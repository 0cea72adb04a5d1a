"""How a label store holds its distributions on disk: the ``teacher_labels.encoding`` setting
(docs/design.md §6, "Encodings").

Every encoding stores one or more plain arrays ``[N, V, 3, L]`` (row, view, angle, last axis)
that zarr-python, xarray or tensorstore read as they are, and decodes them to eq. 6
distributions ``[..., 3, Q]`` that sum to 1:

========== ====================================== ============================== =================
encoding   arrays (last axis L)                   decode                         bytes/image-view
========== ====================================== ============================== =================
float16    ``probs`` float16 (Q)                  as stored                      6·Q (1,188)
uint8      ``probs_uint8`` uint8 (Q): each        ``q / q.sum(-1)``              3·Q (594)
           distribution scaled so its peak is
           255, then rounded
topK       ``topk_values`` float16 (K): the K     zeros, then ``values /         9·K (K = 16: 144)
           largest probabilities, descending;     values.sum(-1)`` at ``bins``
           ``topk_bins`` uint8 (K; uint16 when
           Q > 256): their bin indices
========== ====================================== ============================== =================

uint8: before renormalisation every bin is within ``peak / 510`` of the true value (rounding
of ``255 · p / peak``); bins below ``peak / 510`` become 0. topK: the mass outside the K bins
is dropped and the kept values renormalised (the student's KL then ignores bins the teacher
gave less than the K-th largest probability); the K kept values are the stored float16 values
exactly, before renormalisation.

The one place an encoding is defined: its arrays, encode, decode (numpy and torch) and the
value checks a reader runs on raw shards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

NAMES = ("float16", "uint8", "top8", "top16", "top32")  # the documented choices; any topK with 1 <= K <= Q is valid
_TOPK = re.compile(r"^top(\d+)$")
UINT8_PEAK = 255


@dataclass(frozen=True)
class ArraySpec:
    """One stored array: its name, dtype and the length of its last axis."""

    name: str
    dtype: str
    last: int
    last_name: str  # dimension name of the last axis


@dataclass(frozen=True)
class Encoding:
    """A parsed ``teacher_labels.encoding`` for ``n_bins`` (Q) bins."""

    name: str
    n_bins: int

    def __post_init__(self) -> None:
        if self.name in ("float16", "uint8"):
            return
        m = _TOPK.match(self.name)
        if not m:
            raise ValueError(f"unknown label encoding {self.name!r}: use float16, uint8 or topK "
                             f"(K bins kept, e.g. top8, top16, top32)")
        k = int(m.group(1))
        if not 1 <= k <= self.n_bins or self.name != f"top{k}":
            raise ValueError(f"label encoding {self.name!r}: K must be an integer 1..Q={self.n_bins} "
                             "(the bins of the bin-1 head)")

    @property
    def k(self) -> int | None:
        """K of a topK encoding, None otherwise."""
        m = _TOPK.match(self.name)
        return int(m.group(1)) if m else None

    @property
    def bins_dtype(self) -> str:
        return "uint8" if self.n_bins <= 256 else "uint16"

    def arrays(self) -> tuple[ArraySpec, ...]:
        if self.name == "float16":
            return (ArraySpec("probs", "float16", self.n_bins, "bin"),)
        if self.name == "uint8":
            return (ArraySpec("probs_uint8", "uint8", self.n_bins, "bin"),)
        k = int(self.k)  # type: ignore[arg-type]
        return (ArraySpec("topk_values", "float16", k, "rank"), ArraySpec("topk_bins", self.bins_dtype, k, "rank"))

    def bytes_per_view(self) -> int:
        """Raw (uncompressed) bytes of one image-view: 3 angles of every array."""
        return sum(3 * a.last * np.dtype(a.dtype).itemsize for a in self.arrays())

    def to_dict(self) -> dict[str, object]:
        """The store's ``encoding`` attribute (part of its provenance)."""
        return {"name": self.name, "K": self.k, "arrays": [a.name for a in self.arrays()],
                "bytes_per_image_view": self.bytes_per_view(), "decode": DECODE[self.kind]}

    @property
    def kind(self) -> str:
        return "topk" if self.k is not None else self.name

    # ------------------------------------------------------------------ encode / decode

    def encode(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        """``probs`` [..., Q] (distributions) → the stored arrays."""
        p = np.asarray(probs)
        if p.shape[-1] != self.n_bins:
            raise ValueError(f"probs have {p.shape[-1]} bins, the encoding {self.name!r} was made for {self.n_bins}")
        if self.name == "float16":
            return {"probs": np.ascontiguousarray(p, dtype=np.float16)}
        f = p.astype(np.float32)
        if self.name == "uint8":
            peak = f.max(-1, keepdims=True)
            scaled = np.where(peak > 0, f / np.where(peak > 0, peak, 1.0), 0.0) * UINT8_PEAK
            return {"probs_uint8": np.rint(scaled).astype(np.uint8)}
        k = int(self.k)  # type: ignore[arg-type]
        h = f.astype(np.float16)
        # stable sort on the float16 values: ties keep the lower bin first, on every machine
        order = np.argsort(-h.astype(np.float32), axis=-1, kind="stable")[..., :k]
        values = np.take_along_axis(h, order, axis=-1)
        return {"topk_values": np.ascontiguousarray(values), "topk_bins": order.astype(self.bins_dtype)}

    def decode(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """The stored arrays (any leading shape) → float32 distributions [..., Q]."""
        if self.name == "float16":
            return np.asarray(parts["probs"], dtype=np.float32)
        if self.name == "uint8":
            q = np.asarray(parts["probs_uint8"], dtype=np.float32)
            return q / q.sum(-1, keepdims=True)
        values = np.asarray(parts["topk_values"], dtype=np.float32)
        bins = np.asarray(parts["topk_bins"]).astype(np.int64)
        out = np.zeros((*values.shape[:-1], self.n_bins), dtype=np.float32)
        np.put_along_axis(out, bins, values / values.sum(-1, keepdims=True), axis=-1)
        return out

    def decode_torch(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`decode` on tensors (the student's batch of soft targets, on its device). The
        float16 encoding returns its tensor unchanged (the loss works in float32 itself)."""
        if self.name == "float16":
            return parts["probs"]
        if self.name == "uint8":
            q = parts["probs_uint8"].float()
            return q / q.sum(-1, keepdim=True)
        values = parts["topk_values"].float()
        bins = parts["topk_bins"].long()
        out = torch.zeros((*values.shape[:-1], self.n_bins), dtype=torch.float32, device=values.device)
        return out.scatter_(-1, bins, values / values.sum(-1, keepdim=True))

    def value_problem(self, parts: Mapping[str, np.ndarray], tol: float = 2e-3) -> str | None:
        """Why raw shard arrays are not what this encoding writes, or None."""
        if self.name == "float16":
            return distribution_problem(parts["probs"], tol)
        if self.name == "uint8":
            peak = np.asarray(parts["probs_uint8"]).max(-1)
            if (peak != UINT8_PEAK).any():
                return f"uint8 distributions whose largest bin is not {UINT8_PEAK} (worst {int(peak.min())})"
            return None
        values = np.asarray(parts["topk_values"], dtype=np.float32)
        bins = np.asarray(parts["topk_bins"])
        if not np.isfinite(values).all():
            return "non-finite top-K probabilities"
        if (values < 0).any() or (np.diff(values, axis=-1) > 0).any():
            return "top-K probabilities negative or not in descending order"
        total = values.sum(-1)
        if (total <= 0).any() or (total > 1 + tol).any():
            return f"top-K probabilities summing outside (0, 1] (range {float(total.min()):.4f}..{float(total.max()):.4f})"
        if (bins >= self.n_bins).any():
            return f"top-K bin indices >= Q={self.n_bins}"
        srt = np.sort(bins, axis=-1)
        if (np.diff(srt.astype(np.int64), axis=-1) == 0).any():
            return "a top-K distribution names the same bin twice"
        return None


DECODE = {
    "float16": "p = probs",
    "uint8": "p = probs_uint8 / probs_uint8.sum(-1)",
    "topk": "p = zeros(Q); p[topk_bins] = topk_values / topk_values.sum(-1)",
}


def distribution_problem(block: np.ndarray, tol: float = 2e-3) -> str | None:
    """Why a block of probabilities is not a set of distributions over its last axis, or None."""
    f = np.asarray(block).astype(np.float32)
    if not np.isfinite(f).all():
        return "non-finite probabilities"
    if (f < 0).any():
        return "negative probabilities"
    err = np.abs(f.sum(-1) - 1.0)
    if (err > tol).any():
        return f"distributions do not sum to 1 (worst error {float(err.max()):.4f}, tolerance {tol})"
    return None


def encoding_from_attrs(attrs: Mapping[str, object], path: str) -> Encoding:
    """The encoding a store was written with; refuses one this hpekd does not know, naming the
    hpekd version that wrote the store."""
    enc = attrs.get("encoding") or {}
    name = enc.get("name") if isinstance(enc, Mapping) else None
    n_bins = int((attrs.get("bins") or {}).get("Q", 0))  # type: ignore[union-attr]
    try:
        return Encoding(str(name), n_bins)
    except ValueError:
        wrote = (attrs.get("package") or {}).get("version", "unknown")  # type: ignore[union-attr]
        raise ValueError(
            f"label store {path!r} has encoding {name!r} (written by hpekd {wrote}), which this hpekd cannot "
            f"decode (it knows float16, uint8 and topK): upgrade hpekd, or rebuild the store with "
            "`hpekd teacher-labels`"
        ) from None


__all__ = ["DECODE", "NAMES", "ArraySpec", "Encoding", "distribution_problem", "encoding_from_attrs"]
