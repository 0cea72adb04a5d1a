"""``PoseDataset``: face crops and target angles from ``boxes.parquet`` rows (docs/design.md §7).

Each item is a dict of tensors (collated by the default DataLoader collate):

- ``image``: uint8 [3, h, w] RGB crop (normalisation happens on the device in the training
  step with :func:`pipeline.core.images.normalize`);
- ``target``: float32 [3] (pitch, yaw, roll) in degrees, corrected for the view;
- ``index``: int64, the row's position in the boxes table (= the manifest row and the label
  store row, docs/design.md §6/§7);
- ``view_id``: int64, the id returned by ``view_fn`` (see below), -1 otherwise;
- ``flip`` (bool) and ``angle`` (float32): the geometric view that was applied;
- ``labelled`` (bool): the row has ground truth; with ``RowQuery(unlabelled=True)`` rows without it
  (``labelled = false`` in the manifest) are included, their ``target`` NaN.

Views. ``train=True`` draws a random view per (seed, epoch, row) with
:func:`pipeline.data.transforms.random_view`; ``train=False`` uses the identity. Passing
``view_fn`` replaces that choice::

    view_fn(row_index: int, rng: np.random.Generator) -> View | tuple[View, int]

``row_index`` is the boxes-table row, ``rng`` the sample's generator for this epoch
(:func:`pipeline.data.transforms.sample_rng`, reproducible). Return a ``View``, or
``(View, view_id)`` to have ``view_id`` reported in the batch, e.g. the student replaying
the teacher's V stored views::

    def replay(row, rng):
        v = int(rng.integers(V))
        return View(bool(flips[row, v]), float(angles[row, v])), v

Photometric augmentation is applied only when ``train`` is true, fresh each epoch. The
dataset can be indexed with a row position ``i`` (epoch = ``self.epoch``) or with a pair
``(epoch, i)``, which is what :class:`pipeline.data.loader.EpochSampler` yields so that
persistent workers see the right epoch.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pipeline.core.decode import read_crop
from pipeline.core.views import View, fit_view, random_view
from pipeline.data.transforms import AugmentConfig, apply_photometric, photometric, sample_rng
from pipeline.manifest.rows import (
    RowQuery,
    image_paths,
    labelled_mask,
    row_angles,
    row_boxes,
    row_ids,
    select,
)
from pipeline.manifest.schema import read_boxes

log = logging.getLogger(__name__)

ViewFn = Callable[[int, np.random.Generator], "View | tuple[View, int]"]


class PoseDataset(Dataset):
    """Face crops of the rows of ``boxes`` that ``rows`` selects (:func:`pipeline.manifest.rows.select`).

    ``rows``: a split name (its labelled rows with status ok and angles within ±99°) or a
    :class:`~pipeline.manifest.rows.RowQuery` (only some ``datasets``, another ``theta``, the
    unlabelled rows too). Labelled rows with a NaN angle or any |angle| > θ are left out and
    counted in ``self.dropped`` (docs/design.md §3/§8). Unlabelled rows are left out (counted in
    ``self.unlabelled_left_out``) unless the query takes them (the student, which learns them
    from the teacher alone); stage 1 and evaluation never see them. ``source`` names the table
    in error messages (default: the path, or "boxes table" for a DataFrame). ``reduced_decode``:
    decode a JPEG at 1/2, 1/4 or 1/8 size when its box is that much larger than the output
    (:mod:`pipeline.core.decode`; the teacher-label job reads images the same way).
    """

    # 9 parameters: the table, which of its rows (one RowQuery: the row rule's whole input), the
    # crop size, then keyword-only options that one or two callers each set by name (train,
    # augment, view_fn, seed: how a sample is drawn; source: the name in messages; reduced_decode:
    # how JPEGs are decoded); a record for them would only rename them.
    def __init__(
        self,
        boxes: pd.DataFrame | str | os.PathLike[str],
        rows: str | RowQuery,
        size: int | Sequence[int],
        *,
        train: bool,
        augment: AugmentConfig | None = None,
        view_fn: ViewFn | None = None,
        seed: int = 0,
        source: str | None = None,
        reduced_decode: bool = True,
    ) -> None:
        if source is None:
            source = "boxes table" if isinstance(boxes, pd.DataFrame) else repr(str(boxes))
        df = boxes.reset_index(drop=True) if isinstance(boxes, pd.DataFrame) else read_boxes(boxes)
        self.size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        if len(self.size) != 2 or min(self.size) < 8:
            raise ValueError(f"input size {size!r} must be an int or [h, w] of at least 8 pixels")
        query = rows if isinstance(rows, RowQuery) else RowQuery(rows)
        picked = select(df, query, source)
        self.dropped, self.unlabelled_left_out = picked.dropped, picked.unlabelled_left_out
        if not picked.rows.size:
            raise ValueError(
                f"no usable rows in {source} for split {query.split!r}"
                + (f" and datasets {list(query.datasets)}" if query.datasets else "")
                + " (need status == 'ok' and, for stage 1 and evaluation, labelled angles within ±99°):"
                + " is the manifest empty, all rejected or all unlabelled?"
            )
        if self.dropped:
            log.info("%s split %r: %d row(s) with angles outside ±%s° left out", source, query.split, self.dropped,
                     query.theta)
        self.rows = picked.rows
        self.paths = image_paths(df, self.rows)
        self.boxes = row_boxes(df, self.rows)
        self.angles = row_angles(df, self.rows)
        self.labelled = labelled_mask(df)[self.rows]
        self.dataset_names = df["dataset"].astype(str).to_numpy()[self.rows]
        self.sample_ids = np.array(row_ids(df, self.rows), dtype=object) if "sample_id" in df else None
        self.split, self.train, self.seed = query.split, bool(train), int(seed)
        self.augment = augment or AugmentConfig()
        self.view_fn = view_fn
        self.reduced_decode = bool(reduced_decode)
        self.epoch = 0
        self._photometric = photometric(self.augment) if train else None

    def __len__(self) -> int:
        return len(self.rows)

    def with_size(self, size: tuple[int, int]) -> PoseDataset:
        """A shallow copy that crops the same rows at another output size (e.g. for figures)."""
        other = copy.copy(self)
        other.size = (int(size[0]), int(size[1]))
        return other

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def view_for(self, i: int, rng: np.random.Generator) -> tuple[View, int]:
        """The view of position ``i`` for this draw (hook, random view or identity)."""
        if self.view_fn is not None:
            v = self.view_fn(int(self.rows[i]), rng)
            return (v, -1) if isinstance(v, View) else (v[0], int(v[1]))
        if self.train:
            return random_view(rng, self.augment.flip_p, self.augment.max_angle), -1
        return View(), -1

    def read_view(self, i: int, view: View) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """The crop of position ``i`` under ``view`` (uint8 [h, w, 3]) and any extra item fields
        (hook: the online-teacher dataset adds the teacher's region Z)."""
        return read_crop(self.paths[i], self.boxes[i], self.size, view, reduce=self.reduced_decode), {}

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        i = int(i)
        row = int(self.rows[i])
        rng = sample_rng(self.seed, epoch, row)
        view, view_id = self.view_for(i, rng)
        view = fit_view(view, tuple(float(a) for a in self.angles[i]))  # no rotation that leaves ±99°
        try:
            out, extra = self.read_view(i, view)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"row {row} ({self.paths[i]}): {exc}") from exc
        pose = view.pose(*self.angles[i])
        if self._photometric is not None:
            out = apply_photometric(self._photometric, out, rng)
        return {
            **extra,
            "image": torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))),
            "target": torch.tensor(pose, dtype=torch.float32),
            "index": torch.tensor(row, dtype=torch.int64),
            "view_id": torch.tensor(view_id, dtype=torch.int64),
            "flip": torch.tensor(view.flip),
            "angle": torch.tensor(view.angle, dtype=torch.float32),
            "labelled": torch.tensor(bool(self.labelled[i])),
        }
