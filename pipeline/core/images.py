"""Image reading and network-input normalisation, one definition for the whole project.

Images are handled as RGB ``uint8`` HWC arrays from the moment they are read; OpenCV's BGR
order stays inside this module and the detector backends.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

# ImageNet normalisation (docs/design.md §9), applied on the device to float RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# file suffixes (lower case) taken as images when a folder is searched
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"})


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 [H, W, 3]. Raises ``ValueError`` naming the file if it cannot be decoded."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {str(p)!r} not found")
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None or img.size == 0:
        raise ValueError(f"image {str(p)!r} could not be decoded (empty or not an image file)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ext = p.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode image for {str(p)!r}")
    buf.tofile(p)


def normalize(batch_uint8: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] or [B, 3, H, W] uint8 → normalised float [B, 3, H, W] (on its device)."""
    x = batch_uint8
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
