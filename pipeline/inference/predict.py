"""One call for users: :func:`predict_images` (a :class:`Predictor` run over paths or arrays).

The names that lived here before the module was split by role are re-exported, so
``from pipeline.inference.predict import Predictor, write_rows, ...`` keeps working.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from pipeline.core.geometry import MIN_BOX_SIZE
from pipeline.inference.inputs import VIDEO_EXTS, InputItem, collect_inputs
from pipeline.inference.predictor import Predictor, parse_ensemble
from pipeline.inference.rows import FORMATS, NO_FACE, ROW_FIELDS, WriteSummary, output_format, read_rows, write_rows

__all__ = [
    "FORMATS", "MIN_BOX_SIZE", "NO_FACE", "ROW_FIELDS", "VIDEO_EXTS", "InputItem", "Predictor", "WriteSummary",
    "collect_inputs", "output_format", "parse_ensemble", "predict_images", "read_rows", "write_rows",
]


def predict_images(
    checkpoint: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | np.ndarray],
    *,
    device: str = "auto",
    detector: str | Any = "yunet",
    batch_size: int = 64,
    ensemble: tuple[int, int] | str | None = None,
    draw_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = False,
) -> list[dict[str, Any]]:
    """One call: rows (dicts with :data:`ROW_FIELDS`) for every face in ``inputs`` (image
    paths, directories, videos or RGB uint8 arrays)."""
    pred = Predictor(checkpoint, device=device, detector=detector, batch_size=batch_size, ensemble=ensemble)
    return list(pred.predict_paths(inputs, draw_dir=draw_dir, progress=progress))
