"""Per-face absolute errors: what `hpekd evaluate` and `hpekd ensemble-grid` keep besides their
MAE, so the report can compare two methods on the same faces (paired bootstrap,
:mod:`pipeline.evaluation.uncertainty`).

One parquet file per evaluation, one row per test face within ±99° (the faces the MAE averages):
``sample_id``, ``dataset``, ``p`` and ``s`` (the ensemble setting; 0 and 1 for a single network)
and ``err_pitch``, ``err_yaw``, ``err_roll`` (float32 degrees). Written atomically, with a fixed
row order (the evaluation's), so the file is a pure function of the model and the data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.angles import ANGLES
from pipeline.core.io import atomic_path

ERR = {a: f"err_{a}" for a in ANGLES}
COLUMNS = ("sample_id", "dataset", "p", "s", *ERR.values())


def errors_frame(sample_ids: np.ndarray, datasets: np.ndarray, err: np.ndarray, p: int = 0, s: int = 1) -> pd.DataFrame:
    """The errors table of one method: ``err`` [n, 3] absolute errors (pitch, yaw, roll)."""
    err = np.asarray(err, dtype=np.float32)
    if err.shape != (len(sample_ids), 3) or len(datasets) != len(sample_ids):
        raise ValueError(f"errors {err.shape} do not match {len(sample_ids)} sample ids / {len(datasets)} datasets")
    return pd.DataFrame({
        "sample_id": np.asarray(sample_ids, dtype=object).astype(str), "dataset": np.asarray(datasets).astype(str),
        "p": np.full(len(err), p, np.int16), "s": np.full(len(err), s, np.int16),
        **{ERR[a]: err[:, j] for j, a in enumerate(ANGLES)},
    })


def write_errors(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    with atomic_path(path, ".parquet") as tmp:
        frame[list(COLUMNS)].to_parquet(tmp, index=False)


def read_errors(path: str | os.PathLike[str]) -> pd.DataFrame:
    """An errors file, checked: one line naming the file when it is missing or not one."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"per-face errors {str(p)!r} not found: rerun the stage that evaluates this model "
                         "(`hpekd evaluate --errors …` / `hpekd ensemble-grid --out-errors …`)")
    try:
        df = pd.read_parquet(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise ValueError(f"per-face errors {str(p)!r} cannot be read ({exc.__class__.__name__}): rerun its stage") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"per-face errors {str(p)!r} lack column(s) {missing}: rerun its stage")
    return df


def paired(a: pd.DataFrame, b: pd.DataFrame, dataset: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The [n, 3] errors of ``a`` and ``b`` on the faces of ``dataset``, aligned by sample id;
    both must cover exactly the same faces (they were evaluated on the same rows)."""
    ea = a[a["dataset"] == dataset].set_index("sample_id")
    eb = b[b["dataset"] == dataset].set_index("sample_id")
    if set(ea.index) != set(eb.index):
        raise ValueError(f"{where}: the two evaluations of {dataset!r} cover different faces "
                         f"({len(ea)} vs {len(eb)}): rerun both on the same boxes table")
    cols = list(ERR.values())
    return ea[cols].to_numpy(np.float64), eb.loc[ea.index, cols].to_numpy(np.float64)
