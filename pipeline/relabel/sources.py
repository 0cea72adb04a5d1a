"""Where a row's box comes from, per ``relabel.source``: the published box files (``file``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.manifest.boxfile import BoxFileMatch, load_box_file, match_box_file, no_match_message
from pipeline.relabel.select import face_id

log = logging.getLogger(__name__)


def match_box_files(df: pd.DataFrame, todo: np.ndarray, box_files: Mapping[str, str]) -> dict[str, BoxFileMatch]:
    """Each dataset with rows to box: its published file matched to its rows (all its rows, so
    "the image's only face" counts rejected faces too); keys are row positions of ``df``."""
    out: dict[str, BoxFileMatch] = {}
    datasets = df["dataset"].astype(str).to_numpy()
    for ds in sorted(set(datasets[todo])):
        if ds not in box_files:
            raise ValueError(f"relabel.box_files has no JSON for dataset {ds!r} (source: file); "
                             f"known: {sorted(box_files)}")
        where = f"box file {str(box_files[ds])!r}"
        entries = load_box_file(box_files[ds])
        pos = np.flatnonzero(datasets == ds)
        paths = df["image_path"].astype(str).to_numpy()[pos].tolist()
        faces = [face_id(s) for s in df["sample_id"].astype(str).to_numpy()[pos]]
        m = match_box_file(entries, paths, faces, where)
        if not m.by_row:
            raise ValueError(no_match_message(where, ds, entries, paths))
        m.by_row = {int(pos[k]): v for k, v in m.by_row.items()}
        if m.unmatched:
            log.warning("relabel: %d entr%s of %s match no row of dataset %r, e.g. %s", len(m.unmatched),
                        "y" if len(m.unmatched) == 1 else "ies", where, ds, m.unmatched[:3])
        out[ds] = m
    return out
