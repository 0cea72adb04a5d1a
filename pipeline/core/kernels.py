"""What decides the bytes on this machine: each numeric library's pinned state, the kernel it picked,
and its version against ``constraints.txt`` (``hpekd doctor`` prints them).

The kernels are read from the libraries themselves: OpenBLAS's core name and thread count from the
copies numpy and scipy load (through threadpoolctl where it is installed, otherwise the same
``*_get_corename`` calls made with ctypes), ATen's capability and thread count from torch, numpy's
enabled SIMD targets, OpenCV's dispatched features and its IPP level. Importing this module does
not load them; :func:`libraries` does.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import numerics

# library → the variables of the pin that decide its kernel (numerics.PINNED / THREAD_VARS)
VARIABLES = {
    "OpenBLAS (numpy, scipy)": ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS"),
    "MKL (torch)": ("MKL_CBWR", "MKL_DYNAMIC", "MKL_NUM_THREADS"),
    "oneDNN (torch)": ("ONEDNN_MAX_CPU_ISA",),
    "ATen (torch)": ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS"),
    "NNPACK (torch)": (),
    "numpy SIMD": ("NPY_DISABLE_CPU_FEATURES",),
    "OpenCV": ("OPENCV_CPU_DISABLE", "OPENCV_IPP"),
    "libjpeg-turbo (OpenCV)": (),
    "PIL": (),
}
STATUS = {  # as numerics.py's docstring says, library by library
    "OpenBLAS (numpy, scipy)": "pinned",
    "MKL (torch)": "pinned",
    "oneDNN (torch)": "pinned",
    "ATen (torch)": "pinned",
    "NNPACK (torch)": "measured harmless (AVX2-only kernels; oneDNN takes the convolutions)",
    "numpy SIMD": "pinned",
    "OpenCV": "pinned",
    "libjpeg-turbo (OpenCV)": "measured harmless (SIMD stops at AVX2; same bytes as its C path)",
    "PIL": "out of reach (no run-time dispatch; its build is fixed by constraints.txt)",
}
PACKAGES = ("numpy", "scipy", "torch", "torchvision", "opencv-python-headless", "pillow", "threadpoolctl")


@dataclass
class Library:
    name: str
    status: str
    settings: list[str] = field(default_factory=list)  # "VAR=value (who set it)"
    kernel: str = "?"


def setting(var: str) -> str:
    """``VAR=value (who set it)``: the pin, the environment (agreeing or not), or nobody."""
    value = os.environ.get(var)
    pinned = numerics.wanted().get(var)
    preset = numerics.preset().get(var)
    if numerics.mode() == "native":
        return f"{var}={value!r} (native: not pinned)" if value is not None else f"{var} unset (native)"
    if value is None:
        return f"{var} unset"
    if preset is not None:
        agrees = pinned is None or numerics.agrees(var, preset, pinned)
        return f"{var}={value} (set by the environment{'' if agrees else f'; contradicts the pin {pinned}'})"
    return f"{var}={value} (pinned)"


def openblas_kernels() -> list[str]:
    """Core name, version and threads of each OpenBLAS that numpy and scipy loaded."""
    import numpy  # noqa: F401  (loads numpy's OpenBLAS)
    import scipy.linalg  # noqa: F401  (loads scipy's own)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return _openblas_by_ctypes()
    return [f"{Path(i['filepath']).name}: {i.get('architecture')}, {i.get('version')}, {i['num_threads']} threads"
            for i in threadpool_info() if i.get("internal_api") == "openblas"]


def _openblas_by_ctypes() -> list[str]:
    out = []
    for path in sorted(_loaded_libraries()):
        if "openblas" not in Path(path).name:
            continue
        lib = ctypes.CDLL(path)
        for suffix in ("64_", ""):
            core = getattr(lib, f"scipy_openblas_get_corename{suffix}", None) or getattr(lib, "openblas_get_corename", None)
            config = getattr(lib, f"scipy_openblas_get_config{suffix}", None) or getattr(lib, "openblas_get_config", None)
            threads = (getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
                       or getattr(lib, "openblas_get_num_threads", None))
            if core is not None:
                core.restype = config.restype = ctypes.c_char_p  # type: ignore[union-attr]
                out.append(f"{Path(path).name}: {core().decode()}, {config().decode().split()[1]}, "  # type: ignore[union-attr]
                           f"{threads() if threads else '?'} thread(s)")
                break
    return out


def _loaded_libraries() -> set[str]:
    try:
        text = Path(f"/proc/{os.getpid()}/maps").read_text()
    except OSError:
        return set()
    return {line.split()[-1] for line in text.splitlines() if line.rstrip().endswith(".so") or ".so." in line}


def torch_kernels() -> dict[str, str]:
    import torch

    numerics.apply_threads()
    mkldnn = torch.backends.mkldnn
    return {
        "ATen (torch)": f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads",
        "oneDNN (torch)": (f"{'enabled' if mkldnn.enabled else 'disabled'}"
                           + ("" if mkldnn.is_available() else ", not built in")),
        "MKL (torch)": "available" if torch.backends.mkl.is_available() else "not built in (torch uses another BLAS)",
        "NNPACK (torch)": "available" if torch.backends.nnpack.is_available() else "not built in",
    }


def numpy_kernels() -> str:
    import numpy as np

    umath = np._core._multiarray_umath
    on = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    return "SIMD targets in use: " + (" ".join(on) if on else "baseline only")


def opencv_kernels() -> tuple[str, str]:
    import cv2

    on = [f.lstrip("*") for f in cv2.getCPUFeaturesLine().split() if f.startswith("*") and not f.endswith("?")]
    ipp = f"IPP {cv2.ipp.getIppVersion()}" if cv2.ipp.useIPP() else "IPP off"
    jpeg = next((ln.split(":", 1)[1].strip() for ln in cv2.getBuildInformation().splitlines()
                 if ln.strip().startswith("JPEG:")), "?")
    return f"dispatched: {' '.join(on) or 'baseline only'}; {ipp}", jpeg


def libraries() -> list[Library]:
    """Every library that could pick its kernel by CPU: pinned state and the kernel it runs."""
    kernels = {"OpenBLAS (numpy, scipy)": "; ".join(openblas_kernels()) or "not loaded",
               "numpy SIMD": numpy_kernels(), **torch_kernels()}
    kernels["OpenCV"], kernels["libjpeg-turbo (OpenCV)"] = opencv_kernels()
    import PIL

    kernels["PIL"] = f"Pillow {PIL.__version__} (used only to import teacher images)"
    out = []
    for name, variables in VARIABLES.items():
        status = "native (not pinned)" if numerics.mode() == "native" and STATUS[name] == "pinned" else STATUS[name]
        out.append(Library(name, status, [setting(v) for v in variables], kernels.get(name, "?")))
    return out


def constraints(path: Path) -> dict[str, str]:
    """``name == version`` pins of a constraints file (names normalised as pip does)."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^,;\s]+)", line.strip())
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def versions(path: Path | None) -> list[tuple[str, str, str]]:
    """(package, installed, what constraints.txt pins or a note) of the numeric libraries."""
    pins = constraints(path) if path is not None and path.is_file() else {}
    out = []
    for name in PACKAGES:
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = "not installed"
        want = pins.get(name, "not pinned" if pins else "no constraints.txt found")
        out.append((name, have, want))
    return out
