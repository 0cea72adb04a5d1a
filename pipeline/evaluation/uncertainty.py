"""How sure a difference between two methods is: the paired bootstrap over test faces.

Two methods evaluated on the same faces have per-face absolute errors ``a`` and ``b`` [n, 3]
(pitch, yaw, roll). The difference of their mean MAE is the mean over faces of
``d = mean_angles(a) − mean_angles(b)``; resampling the faces with replacement (the same faces
for both methods: paired) ``n_boot`` times gives its sampling distribution, and the 2.5 and 97.5
percentiles the 95 % interval. Pairing matters: two methods' errors on the same face are strongly
correlated (hard faces are hard for both), so the interval of the difference is far narrower
than the two MAEs' own intervals suggest. The resampling uses a fixed seed, so the interval is a
pure function of the errors (the report stays byte-reproducible).

A method *beats* another only when the whole interval lies below 0; when it straddles 0 there is
no measurable difference at this test-set size.

:func:`seeded_difference` is the same question when each method was trained with several seeds:
a two-level bootstrap that resamples the seeds as well as the faces (kd_effect benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
SEED = 0


@dataclass(frozen=True)
class Difference:
    """``mean(a) − mean(b)`` of the per-face mean-over-angles error, with its interval."""

    delta: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        """``"lower"`` (a beats b), ``"higher"`` (b beats a) or ``"none"`` (interval contains 0)."""
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "none"

    def to_dict(self) -> dict[str, float | int | str]:
        return {"delta": round(self.delta, 4), "ci_low": round(self.low, 4), "ci_high": round(self.high, 4),
                "n": self.n, "verdict": self.verdict}


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL,
                      seed: int = SEED) -> Difference:
    """Paired bootstrap interval of ``mean(a) − mean(b)``; ``a``, ``b``: per-face errors [n] or
    [n, k] (averaged over the last axis), the same faces in the same order."""
    a, b = _per_face(a), _per_face(b)
    if a.shape != b.shape:
        raise ValueError(f"paired errors must cover the same faces: {a.shape[0]} vs {b.shape[0]}")
    if a.size == 0:
        raise ValueError("no faces to compare")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"level {level} must be in (0, 1) and n_boot {n_boot} >= 1")
    d = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Difference(float(d.mean()), float(low), float(high), int(d.size))


def _per_face(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    if e.ndim == 2:
        e = e.mean(axis=1)
    if e.ndim != 1 or not np.isfinite(e).all():
        raise ValueError("per-face errors must be finite, shape [n] or [n, k]")
    return e


def seeded_difference(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL,
                      seed: int = SEED) -> Difference:
    """Two-level paired bootstrap of ``mean(a) − mean(b)`` over training seeds *and* test faces.

    ``a``, ``b``: per-face errors [S, n] or [S, n, k] (averaged over the last axis): row ``s`` is
    the model trained with seed ``s``, the same faces in the same order in every row; ``b`` may
    have one row (a model without seeds, e.g. the teacher), used for every seed of ``a``. Each
    bootstrap draw resamples the seeds (paired: seed ``s`` of ``a`` with seed ``s`` of ``b``) and,
    independently, the faces, so the interval covers both how the result varies with the training
    seed and with the test set. With one seed it is :func:`paired_difference`'s interval."""
    a, b = _per_seed(a), _per_seed(b)
    if b.shape[0] == 1 and a.shape[0] > 1:
        b = np.repeat(b, a.shape[0], axis=0)
    if a.shape != b.shape:
        raise ValueError(f"seeded errors must cover the same seeds and faces: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("no faces to compare")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"level {level} must be in (0, 1) and n_boot {n_boot} >= 1")
    d = a - b  # [S, n]
    n_seeds, n_faces = d.shape
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, n_faces, size=(n_boot, n_faces))
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    per_seed = np.stack([d[s][faces].mean(axis=1) for s in range(n_seeds)])  # [S, n_boot]
    means = per_seed[seeds, np.arange(n_boot)[:, None]].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Difference(float(d.mean()), float(low), float(high), int(n_faces))


def _per_seed(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    if e.ndim == 3:
        e = e.mean(axis=2)
    if e.ndim != 2 or not np.isfinite(e).all():
        raise ValueError("seeded per-face errors must be finite, shape [seeds, n] or [seeds, n, k]")
    return e
