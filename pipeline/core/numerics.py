"""Same bytes on every x86-64 CPU: pin the numeric code paths before numpy, OpenCV or torch load.

The math libraries pick their kernels by the CPU they find: ATen's vectorised ops
(``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``), MKL's GEMM
(``MKL_CBWR``), numpy's SIMD loops and transcendental functions (``NPY_DISABLE_CPU_FEATURES``)
and OpenCV's dispatch (``OPENCV_CPU_DISABLE``); AVX-512 and AVX2 kernels round differently, and
Intel and AMD parts take different MKL paths. The number of threads changes how reductions are
split, so it changes the bytes too. Measured here: one ResNet18 training step gives six
different weight hashes for {AVX-512, AVX2, baseline} × {1, 2 threads}; numpy's AVX-512 sin/cos
alone change the synthetic dataset's ``.mat`` files.

:func:`pin` caps every one of them at AVX2 (every x86-64 CPU of the last decade has it) and
fixes the thread count (``HPEKD_THREADS``, default 2), by setting environment variables that
child processes inherit (DataLoader and dask workers, relabel's process pool, the stages `dvc
repro` runs). It must run before numpy/torch/cv2 are imported: the entry points call it first
(the ``hpekd`` console script, ``dev.py``, the tests' conftest, the benchmarks).
``HPEKD_NUMERICS=native`` turns it off (faster on AVX-512 machines, bytes then depend on the
CPU). GPU kernels are not affected; runs on CUDA are reproducible as metrics, not bytes.
"""

from __future__ import annotations

import os
import sys

SWITCH = "HPEKD_NUMERICS"  # "pinned" (default) | "native"
THREADS = "HPEKD_THREADS"  # torch/OpenMP/MKL threads under the pin (default 2)
DEFAULT_THREADS = 2

# what the pin sets (values are the AVX2 caps of each library)
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX,AVX512-CLX,AVX_VNNI",  # the names OpenCV 5 knows
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def mode() -> str:
    value = os.environ.get(SWITCH, "pinned").strip().lower() or "pinned"
    if value not in ("pinned", "native"):
        raise ValueError(f"{SWITCH}={value!r}: use 'pinned' (same bytes on every x86-64 CPU) or 'native'")
    return value


def threads() -> int:
    raw = os.environ.get(THREADS, str(DEFAULT_THREADS))
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{THREADS}={raw!r} must be a whole number >= 1")
    return n


def pin() -> dict[str, str]:
    """Set the pinned environment (unless ``HPEKD_NUMERICS=native``); returns what is in force.
    A variable the user set explicitly is left as it is. Call before numpy/torch/cv2 load."""
    if mode() == "native":
        return {}
    loaded = [m for m in ("numpy", "torch", "cv2") if m in sys.modules]
    wanted = {**PINNED, **{v: str(threads()) for v in THREAD_VARS}}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    if loaded:  # too late for these libraries' dispatch; threads can still be fixed
        _pin_loaded_torch_threads()
    return {k: os.environ[k] for k in wanted}


def apply_threads() -> None:
    """After torch is imported: its intra-op pool to the pinned size (torch reads OMP_NUM_THREADS
    at start-up, but a library may have changed it since)."""
    if mode() == "pinned":
        _pin_loaded_torch_threads()


def _pin_loaded_torch_threads() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads():
        torch.set_num_threads(threads())


def describe() -> str:
    """One line for logs: which numerics this process runs with."""
    if mode() == "native":
        return "numerics: native (bytes depend on the CPU; HPEKD_NUMERICS=pinned for the same bytes everywhere)"
    return f"numerics: pinned to AVX2, {threads()} threads ({SWITCH}=native to use the full CPU)"
