"""The relabel summary (the DVC metric ``metrics/relabel.json``) and its console lines."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.manifest.rows import ok_mask
from pipeline.relabel.config import RelabelConfig
from pipeline.relabel.records import RowBox, reason_category
from pipeline.relabel.select import MISMATCH, MISS, RULES

YAW_BUCKETS = ((0, 30), (30, 60), (60, 90), (90, 181))


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _stats(v: np.ndarray) -> dict[str, float | None]:
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "median": None}
    return {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4)}


def _field(rows: Sequence[RowBox], name: str, dtype: Any) -> np.ndarray:
    return np.array([getattr(r, name) for r in rows], dtype=dtype)


def summarize(out: pd.DataFrame, rows: Sequence[RowBox], config: RelabelConfig, cache_counts: dict) -> dict:
    """The summary of the boxes table ``out`` and its records ``rows`` (one per row, same order);
    ``images`` holds the cache counters (not part of the DVC metric)."""
    todo = _field(rows, "processed", bool)
    ok = ok_mask(out)
    got = _field(rows, "detected", bool) & ok  # the detector's box was kept
    iou_lm, overlap = _field(rows, "iou_landmarks", np.float64), _field(rows, "overlap", np.float64)
    rule = _field(rows, "selected_by", object)
    new_rej = todo & ~ok
    # true misses (nothing detected) vs mismatches (faces found, none the labelled one), whether
    # the row was then rejected or fell back to its landmark box
    cause = _field(rows, "cause", object)
    missed_rows = todo & (cause == MISS)
    mismatched_rows = todo & (cause == MISMATCH)
    fell_back = Counter(reason_category(r.fallback_reason) for r in rows if r.fallback)

    labelled = out["labelled"].to_numpy(bool)
    datasets = out["dataset"].astype(str).to_numpy()
    sources = {str(ds): config.source_for(str(ds)) for ds in sorted(set(datasets))}
    box_source = out["box_source"].astype(str).to_numpy()

    def part(mask: np.ndarray) -> dict:
        n_todo = int((mask & todo).sum())
        chosen = mask & got
        return {
            "rows": int(mask.sum()),
            "unlabelled": int((mask & ok & ~labelled).sum()),
            "processed": n_todo,
            "ok": int((mask & ok).sum()),
            "rejected": int((mask & new_rej).sum()),
            "fallback": int((mask & out["fallback"].to_numpy()).sum()),
            "detected": int(chosen.sum()),
            "detection_rate": round(float(chosen.sum()) / n_todo, 4) if n_todo else None,
            "missed": int((mask & missed_rows).sum()),
            "mismatched": int((mask & mismatched_rows).sum()),
            "mean_iou_landmarks": _stats(iou_lm[chosen])["mean"],
            "mean_overlap_landmarks": _stats(overlap[chosen])["mean"],
            "selected_by": {r: int((chosen & (rule == r)).sum()) for r in RULES if (chosen & (rule == r)).any()},
            # where the kept boxes came from (the landmark fallback counts as landmarks)
            "box_source": {str(k): int(v) for k, v in sorted(Counter(box_source[mask & ok]).items())},
        }

    summary: dict[str, Any] = {
        "source": config.source,
        "detector": config.detector if "detector" in set(sources.values()) else None,
        "sources": sources,
        **part(np.ones(len(out), dtype=bool)),
        "rejected_in_manifest": int((~todo).sum()),
        "rejected_by_reason": dict(sorted(Counter(reason_category(r) for r in out["reason"].to_numpy()[new_rej]).items())),
        "fallback_by_reason": dict(sorted(fell_back.items())),
        "box": _box_stats(out, ok),
        "per_dataset": {ds: {"source": src, **part(datasets == ds)} for ds, src in sources.items()},
        "images": cache_counts,
        **_by_abs_yaw(np.abs(out["yaw"].to_numpy(np.float64)), todo, got),
    }
    return _nan_to_none(summary)


def _box_stats(out: pd.DataFrame, ok: np.ndarray) -> dict[str, Any]:
    """Width, height and aspect of the kept boxes."""
    w = (out["x2"] - out["x1"]).to_numpy(np.float64)[ok]
    h = (out["y2"] - out["y1"]).to_numpy(np.float64)[ok]
    return {"width": _stats(w), "height": _stats(h), "aspect_w_over_h": _stats(w / np.where(h > 0, h, np.nan))}


def _by_abs_yaw(ayaw: np.ndarray, todo: np.ndarray, got: np.ndarray) -> dict:
    """Detection rate of the processed rows per bucket of |yaw| (degrees) and for |yaw| <= 60."""
    by_yaw = {}
    for lo, hi in YAW_BUCKETS:
        m = todo & (ayaw >= lo) & (ayaw < hi)
        if m.any():
            by_yaw[f"{lo}-{hi if hi <= 90 else 'inf'}"] = {
                "rows": int(m.sum()), "detection_rate": round(float((m & got).sum()) / int(m.sum()), 4)}
    m = todo & (ayaw <= 60)
    return {"detection_rate_by_abs_yaw": by_yaw,
            "detection_rate_abs_yaw_le_60": round(float((m & got).sum()) / int(m.sum()), 4) if m.any() else None}


def format_summary(summary: dict) -> str:
    """A few human-readable lines for the console."""
    used = sorted(set(summary["sources"].values())) or [summary["source"]]
    lines = [f"relabel ({', '.join(u + (':' + summary['detector'] if u == 'detector' else '') for u in used)}): "
             f"{summary['ok']}/{summary['rows']} rows with a box, {summary['rejected']} rejected, "
             f"{summary['fallback']} fell back to landmarks, {summary['rejected_in_manifest']} already rejected"]
    for ds, p in summary["per_dataset"].items():
        if p["source"] != "detector":
            lines.append(f"  {ds}: {p['ok']}/{p['rows']} ok, boxes from {p['source']}")
            continue
        rate = "n/a" if p["detection_rate"] is None else f"{100 * p['detection_rate']:.1f}%"
        ov = "n/a" if p["mean_overlap_landmarks"] is None else f"{p['mean_overlap_landmarks']:.3f}"
        lines.append(f"  {ds}: {p['ok']}/{p['rows']} ok, detection rate {rate} ({p['missed']} missed, "
                     f"{p['mismatched']} mismatched), mean overlap with the landmark extent {ov}")
        if p["unlabelled"] or set(p["selected_by"]) - {"landmarks"}:
            chosen = ", ".join(f"{k} {v}" for k, v in p["selected_by"].items())
            lines.append(f"    {p['unlabelled']} unlabelled; face chosen by: {chosen or 'none'}")
    for ds, m in summary.get("box_files", {}).items():
        if m["unmatched"]:
            lines.append(f"  {ds}: {m['unmatched']} of {m['entries']} box-file entries match no manifest row, "
                         f"e.g. {', '.join(m['unmatched_examples'])}")
    if summary["rejected_by_reason"]:
        lines.append("  rejected: " + ", ".join(f"{k} ({v})" for k, v in summary["rejected_by_reason"].items()))
    if summary["fallback_by_reason"]:
        lines.append("  fell back: " + ", ".join(f"{k} ({v})" for k, v in summary["fallback_by_reason"].items()))
    return "\n".join(lines)
