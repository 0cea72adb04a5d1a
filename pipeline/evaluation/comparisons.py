"""The comparisons Table 5 is read for, each with its paired 95 % interval: the pairs of roles in
:data:`pipeline.evaluation.roles.COMPARISONS` — the ensemble against its single network, every KD
student against the teacher (stage 1), against the same student trained without KD, distilled
online and trained on teacher-free soft labels, the student without KD against the teacher (so
that "beats its teacher" is never read as an effect of KD), and the soft-label student against
the student without KD.

Each method's per-face errors come from its evaluation (:mod:`pipeline.evaluation.errors`); the
two methods of a comparison are aligned by sample id per test set and compared with
:func:`pipeline.evaluation.uncertainty.paired_difference`. The findings say "beats" only when the
interval lies wholly below 0, "is worse than" when wholly above, and "no measurable difference"
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from pipeline.evaluation.errors import paired
from pipeline.evaluation.roles import COMPARISONS, SHARED
from pipeline.evaluation.uncertainty import Difference, paired_difference

# (role, backbone) of a Table-5 row -> its per-face errors
Errors = Mapping[tuple[str, str], pd.DataFrame]


@dataclass(frozen=True)
class Comparison:
    test_set: str
    a: tuple[str, str]  # (role, backbone) of the method measured ...
    b: tuple[str, str]  # ... against this one
    diff: Difference

    @property
    def key(self) -> str:
        """``kd-resnet18 - base-resnet18`` (the metrics file's key)."""
        return f"{self.a[0]}-{self.a[1]} - {self.b[0]}-{self.b[1]}"


def pairs(keys: list[tuple[str, str]]) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Which rows are compared, in the order of ``keys`` and then of :data:`COMPARISONS`: a row of
    role ``a`` against the row of role ``b`` with the same backbone, or against the one teacher
    network for ``b`` in :data:`SHARED` (the base network)."""
    shared = {role: next((k for k in keys if k[0] == role), None) for role in SHARED}
    out = []
    for k in keys:
        for c in COMPARISONS:
            if k[0] != c.a:
                continue
            other = shared[c.b] if c.b in shared else (c.b, k[1])
            if other is not None and other in keys:
                out.append((k, other))
    return out


def compare(errors: Errors, test_sets: list[str]) -> list[Comparison]:
    """Every comparison of :func:`pairs` on every test set both methods were evaluated on."""
    out = []
    for a, b in pairs(sorted(errors)):
        for t in test_sets:
            if not ((errors[a]["dataset"] == t).any() and (errors[b]["dataset"] == t).any()):
                continue
            ea, eb = paired(errors[a], errors[b], t, f"{a[0]}-{a[1]} vs {b[0]}-{b[1]}")
            out.append(Comparison(t, a, b, paired_difference(ea, eb)))
    return out


def verdict_phrase(diff: Difference) -> str:
    """``beats`` / ``is worse than`` / ``shows no measurable difference from``."""
    return {"lower": "beats", "higher": "is worse than", "none": "shows no measurable difference from"}[diff.verdict]


def interval_text(diff: Difference) -> str:
    return f"Δ {diff.delta:+.2f}, 95 % CI [{diff.low:+.2f}, {diff.high:+.2f}], n = {diff.n}"


def to_metrics(comparisons: list[Comparison]) -> dict[str, dict[str, dict]]:
    """``{test set: {"kd-resnet18 - base-resnet18": {delta, ci_low, ci_high, n, verdict}}}``."""
    out: dict[str, dict[str, dict]] = {}
    for c in comparisons:
        out.setdefault(c.test_set, {})[c.key] = c.diff.to_dict()
    return out
