"""Choosing the torch device, one rule for every stage (training, teacher job, predictor)."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a bare ``cuda`` means ``cuda:<local_rank>``
    (the GPU of this torchrun process). Asking for CUDA where there is none is an error
    rather than a silent fall back to a CPU run that would take days."""
    if isinstance(device, torch.device):
        dev = device
    elif device in ("auto", "", None):
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device {device!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(dev)!r} requested but CUDA is not available here: use device auto or cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(dev)!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return dev
