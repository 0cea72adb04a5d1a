"""Every figure the evaluation writes, in one place:

- :func:`pose_grid`: test faces with predicted (bold) and true (thin) pose axes and both angle
  triples as numbers, like the paper's Fig. 7;
- :func:`scatter_figure`: predicted vs true angle, one panel per angle, with the identity line;
- :func:`ensemble_heatmap`: MAE of every (p, s) ensemble, like the paper's Fig. 6;
- :func:`bar_chart`: the Table-5 MAE of every model per test set.

Axes are drawn with :func:`pipeline.inference.drawing.draw_axes` (the one drawing convention:
x red, y green, z blue, from the 3DDFA rotation) and text with
:func:`pipeline.inference.drawing.draw_caption` (white on a filled box, legible on any face).
PNGs are written atomically; matplotlib runs headless (Agg).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.core.angles import ANGLES
from pipeline.core.images import write_image
from pipeline.core.io import atomic_path
from pipeline.evaluation.roles import ROLES
from pipeline.inference.drawing import caption_height, draw_axes, draw_caption

TRUE_COLORS = ((255, 150, 150), (150, 255, 150), (150, 150, 255))  # lighter x/y/z for the ground truth


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    plt = _pyplot()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})  # no version stamp in the bytes
    plt.close(fig)


def _angles_text(tag: str, angles: Sequence[float]) -> str:
    return f"{tag} " + " ".join(f"{a:+.0f}" for a in angles)


def pose_tile(crop: np.ndarray, pred: Sequence[float], true: Sequence[float], caption: str = "") -> np.ndarray:
    """One face crop with the true pose as thin light axes, the prediction as bold axes, and
    the numbers (pitch yaw roll) of both, plus an optional caption on top."""
    img = np.ascontiguousarray(crop.copy())
    h, w = img.shape[:2]
    center, size = (w / 2, h / 2), 0.42 * min(h, w)
    bold, thin = max(2, round(min(h, w) / 50)), max(1, round(min(h, w) / 150))
    draw_axes(img, *true, center=center, size=size, thickness=thin, colors=TRUE_COLORS)
    draw_axes(img, *pred, center=center, size=size, thickness=bold)
    scale = max(0.3, min(h, w) / 420)
    line = caption_height(scale) + 1  # one caption box per line, stacked without overlap
    draw_caption(img, _angles_text("true", true), (3, h - 4), scale)
    draw_caption(img, _angles_text("pred", pred), (3, h - 4 - line), scale)
    if caption:
        draw_caption(img, caption, (3, line), scale)
    return img


def pose_grid(
    crops: Sequence[np.ndarray], preds: np.ndarray, trues: np.ndarray, captions: Sequence[str] | None = None,
    columns: int = 6,
) -> np.ndarray:
    """Tile :func:`pose_tile` images (all the same size) into one RGB image."""
    if not len(crops):
        raise ValueError("no faces to draw")
    tiles = [pose_tile(c, p, t, captions[i] if captions else "") for i, (c, p, t) in enumerate(zip(crops, preds, trues))]
    h, w = tiles[0].shape[:2]
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((rows * (h + 4) + 4, cols * (w + 4) + 4, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[4 + r * (h + 4): 4 + r * (h + 4) + h, 4 + c * (w + 4): 4 + c * (w + 4) + w] = tile
    return grid


def write_pose_grid(path: str | os.PathLike[str], grid: np.ndarray) -> None:
    with atomic_path(path, os.path.splitext(str(path))[1] or ".png") as tmp:
        write_image(tmp, grid)


def scatter_figure(pred: np.ndarray, true: np.ndarray, path: str | os.PathLike[str], title: str,
                   stats: Mapping[str, Any] | None = None) -> None:
    """Predicted vs true (degrees), one panel per angle, identity line; ``stats`` (the
    evaluate metrics: ``mae_*``, ``slope_*``, ``r_*``) go into the panel titles."""
    plt = _pyplot()
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    lim = max(10.0, float(np.nanmax(np.abs(np.concatenate([pred, true])))) * 1.05) if len(pred) else 99.0
    for k, (ax, name) in enumerate(zip(axes, ANGLES)):
        ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=1, ls="--", label="identity")
        ax.scatter(true[:, k], pred[:, k], s=8, alpha=0.6, color=("tab:red", "tab:green", "tab:blue")[k])
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {name} (°)")
        ax.set_ylabel(f"predicted {name} (°)")
        s = stats or {}
        extra = "".join(f"  {lab} {s[key]:.2f}" for lab, key in (("MAE", f"mae_{name}"), ("slope", f"slope_{name}"),
                                                                  ("r", f"r_{name}")) if s.get(key) is not None)
        ax.set_title(f"{name}{extra}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def ensemble_heatmap(rows: Sequence[Mapping[str, Any]], p_max: int, strides: Sequence[int],
                     path: str | os.PathLike[str]) -> None:
    """Fig. 6: mean MAE of each (p, s) ensemble, one panel per test set."""
    plt = _pyplot()
    names = sorted({r["dataset"] for r in rows})
    strides = sorted(set(strides))
    fig, axes = plt.subplots(len(names), 1, figsize=(max(5, 0.55 * (p_max + 2)), 1.2 + 0.6 * len(strides) * len(names)),
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        mat = np.full((len(strides), p_max + 1), np.nan)
        for r in rows:
            if r["dataset"] == name:
                mat[strides.index(r["s"]), r["p"]] = r["mae_mean"]
        im = ax.imshow(mat, cmap="viridis_r", aspect="auto")
        for (i, j), v in np.ndenumerate(mat):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(p_max + 1))
        ax.set_yticks(range(len(strides)), [str(s) for s in strides])
        ax.set_xlabel("padding p")
        ax.set_ylabel("stride s")
        ax.set_title(f"{name}: ensemble MAE (mean of pitch, yaw, roll)")
        fig.colorbar(im, ax=ax, label="MAE°")
    fig.tight_layout()
    _save(fig, path)


def bar_chart(rows: Sequence[Any], sets: Sequence[str], path: str | os.PathLike[str]) -> None:
    """Grouped bars: per test set, MAE pitch/yaw/roll/mean of every row. A row has ``role``
    (a key of :data:`pipeline.evaluation.roles.ROLES`, whose colour map it gets: the darker, the
    deeper the backbone), ``label`` and ``results`` {test set: pitch/yaw/roll/mean}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sets), figsize=(max(5.0, 1.1 * len(rows) + 2) * len(sets), 4.2), squeeze=False)
    by_role: dict[str, list[Any]] = {}
    for r in rows:
        by_role.setdefault(r.role, []).append(r)

    def color(r: Any):
        group = by_role[r.role]
        return plt.get_cmap(ROLES[r.role].cmap)(0.4 + 0.4 * (group.index(r) + 1) / len(group))

    metrics = ("pitch", "yaw", "roll", "mean")
    for ax, t in zip(axes[0], sets):
        present = [r for r in rows if t in r.results]
        x = np.arange(len(metrics))
        width = 0.8 / max(1, len(present))
        for i, r in enumerate(present):
            res = r.results[t]
            vals = [getattr(res, m) for m in metrics]
            bars = ax.bar(x + (i - (len(present) - 1) / 2) * width, vals, width, label=r.label,
                          color=color(r), edgecolor="black", linewidth=0.4)
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        ax.set_xticks(x, ["pitch", "yaw", "roll", "MAE"])
        ax.set_ylabel("MAE (degrees)")
        ax.set_title(t)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Head pose MAE per model and test set")
    fig.tight_layout()
    _save(fig, path)
