"""Bin grids of the regression-via-classification heads (docs/design.md §4, paper eq. 2).

For bin size ``b`` over ``[-θ, θ]``: ``q = ceil(2θ / b)`` bins whose edges start at
``-q·b/2``; bin ``i`` has center ``-q·b/2 + b·(i + 0.5)``. The grid is symmetric about 0,
so a horizontal flip reverses the yaw and roll distributions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from pipeline.core.angles import THETA


@dataclass(frozen=True)
class BinGrid:
    size: float
    theta: float = THETA

    def __post_init__(self) -> None:
        if not (self.size > 0) or self.size > 2 * self.theta:
            raise ValueError(f"bin size {self.size!r} must be in (0, {2 * self.theta}] (2·θ)")
        if not math.isclose(self.size, round(self.size)) and self.size < 0.5:
            raise ValueError(f"bin size {self.size!r} is too small to give sensible classes")

    @property
    def count(self) -> int:
        return math.ceil(round(2 * self.theta / self.size, 9))

    @property
    def low(self) -> float:
        return -self.count * self.size / 2

    @cached_property
    def centers(self) -> np.ndarray:
        return (self.low + self.size * (np.arange(self.count) + 0.5)).astype(np.float32)

    def centers_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.as_tensor(self.centers, device=device)

    def classify(self, angles: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Class index of the bin containing each angle (clamped into the grid)."""
        if isinstance(angles, torch.Tensor):
            idx = torch.floor((angles - self.low) / self.size).long()
            return idx.clamp_(0, self.count - 1)
        idx = np.floor((np.asarray(angles, dtype=np.float64) - self.low) / self.size).astype(np.int64)
        return np.clip(idx, 0, self.count - 1)

    def decode_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected angle ⟨centers, p⟩ over the last axis (eq. 2 applied to probabilities)."""
        return (probs.float() * self.centers_tensor(probs.device)).sum(-1)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Eq. 2: angle = ⟨centers, softmax(logits)⟩ over the last axis."""
        return self.decode_probs(torch.softmax(logits.float(), dim=-1))
