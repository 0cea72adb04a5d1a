"""Which rows of a boxes table a stage uses."""

from __future__ import annotations

import numpy as np
import pandas as pd


def select_rows(df: pd.DataFrame, split: str = "train") -> np.ndarray:
    """Indices (manifest order) of the rows the teacher labels: status ok, the given split.

    The store's row i is ``df.iloc[rows[i]]``; the student uses the same function.
    """
    mask = (df["status"].astype(str) == "ok") & (df["split"].astype(str) == split)
    return np.flatnonzero(mask.to_numpy()).astype(np.int64)
