"""The comparisons Table 5 is read for, each with its paired 95 % interval: the ensemble against
its single network, every KD student against the teacher (stage 1), and every KD student against
the same student trained without KD.

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
    """Which rows are compared: (ensemble, base), (kd, base), (kd, nokd) and (kd, online) of the
    same backbone (the label store against the teacher run online)."""
    base = next((k for k in keys if k[0] == "base"), None)
    out = []
    for k in keys:
        if k[0] == "ensemble" and base is not None:
            out.append((k, base))
        if k[0] == "kd":
            if base is not None:
                out.append((k, base))
            if ("nokd", k[1]) in keys:
                out.append((k, ("nokd", k[1])))
            if ("online", k[1]) in keys:
                out.append((k, ("online", k[1])))
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
