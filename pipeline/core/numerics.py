"""Same bytes on every x86-64 CPU: pin the numeric code paths before numpy, OpenCV or torch load.

The math libraries pick their kernels by the CPU they find, and AVX-512 and AVX2 kernels (or
Intel's and AMD's paths) round differently; the number of threads changes how reductions are
split, so it changes the bytes too. :func:`pin` caps every library that dispatches by CPU at
AVX2 (every x86-64 CPU of the last decade has it) and fixes the thread counts, by setting
environment variables that child processes inherit (DataLoader and dask workers, relabel's process
pool, the stages ``dvc repro`` runs). It must run before numpy/torch/cv2 are imported: the entry
points call it first (the ``hpekd`` console script, ``dev.py``, the tests' conftest, the
benchmarks). ``HPEKD_NUMERICS=native`` leaves everything as it is (faster on AVX-512 machines,
bytes then depend on the CPU). GPU kernels are not affected.

Library by library (evidence: ``benchmarks/numerics/`` holds this repository's machines'
fingerprints of ``../shared/numerics/fingerprint.py``; tests/test_kernel_sweep.py plays other CPUs
on one machine):

- OpenBLAS (numpy's and scipy's own copies: matmul, solve, SVD): **pinned**, ``OPENBLAS_CORETYPE``
  = Haswell (its AVX2 kernels; ``Zen`` runs the same ones) and ``OPENBLAS_NUM_THREADS`` = 1 (the
  split changes numpy's matmul bytes; numpy's matrices here are small, so one thread costs nothing
  and does not depend on the core count). SkylakeX kernels change 2 of 50 rendered JPEGs.
- MKL (torch's BLAS: linear layers, convolutions when oneDNN is off): **pinned**, ``MKL_CBWR`` =
  COMPATIBLE, ``MKL_NUM_THREADS`` and ``MKL_DYNAMIC=FALSE`` (MKL may otherwise run fewer threads
  than asked for).
- oneDNN (torch's convolutions): **pinned**, ``ONEDNN_MAX_CPU_ISA`` = AVX2. It stays on: with
  the AVX2 cap every fingerprint block agrees between an AVX2-only Zen 3 and an AVX-512 EPYC, and
  turning it off costs training speed. Its blocking may depend on cache sizes: harmless between
  those two CPUs, not proven for every CPU.
- NNPACK (torch): **measured harmless**: oneDNN takes the convolutions, and NNPACK's x86-64
  kernels are AVX2 only; the oneDNN-off fingerprints (where NNPACK can run) agree too.
- ATen (torch's vectorised ops: softmax, reductions, Adam): **pinned**, ``ATEN_CPU_CAPABILITY``
  = avx2; its OpenMP pool by ``OMP_NUM_THREADS`` and :func:`apply_threads`.
- numpy's SIMD loops (sin/cos/exp, reductions): **pinned**, ``NPY_DISABLE_CPU_FEATURES`` turns
  off its AVX-512 loops (they change the synthetic dataset's ``.mat`` files).
- OpenCV's dispatch (warp, resize, colour conversion): **pinned**, ``OPENCV_CPU_DISABLE`` (the
  AVX-512 names OpenCV 5 knows); its Intel IPP: **pinned**, ``OPENCV_IPP`` = avx2 (IPP would
  take its AVX-512 code; warp/resize agreed without the cap, it is kept as it costs nothing).
- libjpeg-turbo's SIMD (OpenCV's JPEG encoder and decoder): **measured harmless**: its x86 SIMD
  stops at AVX2 and the integer DCT gives the same bytes as its plain C path
  (``JSIMD_FORCENONE=1`` in the kernel-sweep test).
- PIL (only the teacher's image import): **out of reach, harmless in practice**: Pillow has no
  run-time CPU dispatch; its bytes depend on its build, which ``constraints.txt`` fixes.
- scipy (``scipy.io`` .mat files only): its bundled OpenBLAS obeys the same two OpenBLAS variables.

A value the environment (or the user) already set is never overridden or unset: hosts set
``OPENBLAS_CORETYPE`` themselves where an OpenBLAS build misbehaves on their CPU. A value that
contradicts the pin, or a malformed ``HPEKD_THREADS``/``HPEKD_NUMERICS``, gets one warning line
naming the variable and what it does to the bytes; the run still starts.
"""

from __future__ import annotations

import logging
import os
import sys

SWITCH = "HPEKD_NUMERICS"  # "pinned" (default) | "native"
THREADS = "HPEKD_THREADS"  # torch/OpenMP/MKL threads under the pin (default 2)
DEFAULT_THREADS = 2

# what the pin sets (values are the AVX2 caps of each library, fixed thread counts)
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX,AVX512-CLX,AVX_VNNI",  # the names OpenCV 5 knows
    "OPENCV_IPP": "avx2",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# other values that give the pin's bytes (OpenBLAS's Zen target runs its Haswell kernels)
EQUIVALENT = {"OPENBLAS_CORETYPE": {"haswell", "zen"}}
# what each variable decides, for the warning when a value set beforehand differs from the pin
EFFECT = {
    "ATEN_CPU_CAPABILITY": "torch's vectorised kernels",
    "ONEDNN_MAX_CPU_ISA": "torch's convolution kernels (oneDNN)",
    "MKL_CBWR": "MKL's GEMM code path",
    "MKL_DYNAMIC": "MKL's thread count",
    "NPY_DISABLE_CPU_FEATURES": "numpy's SIMD loops",
    "OPENCV_CPU_DISABLE": "OpenCV's SIMD dispatch",
    "OPENCV_IPP": "OpenCV's Intel IPP kernels",
    "OPENBLAS_CORETYPE": "numpy's and scipy's BLAS kernels",
    "OPENBLAS_NUM_THREADS": "how numpy's matrix products are split",
    "OMP_NUM_THREADS": "how torch's reductions are split",
    "MKL_NUM_THREADS": "how MKL's products are split",
}

log = logging.getLogger("hpekd.numerics")
_warned: set[str] = set()
_preset: dict[str, str] | None = None  # the pinned variables as they were before the first pin()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


def mode() -> str:
    """``pinned`` or ``native``; a malformed value warns once and counts as ``pinned``."""
    value = os.environ.get(SWITCH, "pinned").strip().lower() or "pinned"
    if value not in ("pinned", "native"):
        _warn_once(SWITCH, f"warning: {SWITCH}={value!r} is neither 'pinned' nor 'native': running pinned "
                           f"(the same bytes on every x86-64 CPU)")
        return "pinned"
    return value


def threads() -> int:
    """The pinned thread count; a malformed ``HPEKD_THREADS`` warns once and counts as the default."""
    raw = os.environ.get(THREADS, str(DEFAULT_THREADS))
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        _warn_once(THREADS, f"warning: {THREADS}={raw!r} is not a whole number >= 1: running {DEFAULT_THREADS} "
                            f"threads (the thread count decides how reductions are split, so it changes the bytes)")
        return DEFAULT_THREADS
    return n


def wanted() -> dict[str, str]:
    """Every variable the pin sets, with its pinned value."""
    return {**PINNED, **{v: str(threads()) for v in THREAD_VARS}}


def agrees(key: str, value: str, pinned: str) -> bool:
    """Whether ``key=value`` gives the pin's bytes (equal, or a known equivalent)."""
    norm = value.strip().lower()
    return norm == pinned.lower() or norm in EQUIVALENT.get(key, set())


def contradictions() -> dict[str, str]:
    """Variables set before the pin to a value that is not the pin's: name → value."""
    return {k: os.environ[k] for k, v in wanted().items() if k in os.environ and not agrees(k, os.environ[k], v)}


def preset() -> dict[str, str]:
    """The variables of the pin that were set before this process first pinned (by the host, the
    user or a parent process): what the pin kept rather than set."""
    if _preset is not None:
        return dict(_preset)
    return {k: os.environ[k] for k in wanted() if k in os.environ}


def pin() -> dict[str, str]:
    """Set the pinned environment (unless ``HPEKD_NUMERICS=native``); returns what is in force.
    A variable already set stays as it is (one warning line where it contradicts the pin).
    Call before numpy/torch/cv2 load."""
    global _preset
    if _preset is None:
        _preset = preset()
    if mode() == "native":
        return {}
    want = wanted()
    for key, value in contradictions().items():
        _warn_once(key, f"warning: {key}={value!r} (set before hpekd started) is kept, but the pin wants "
                        f"{want[key]!r}: it changes {EFFECT[key]}, so the bytes may differ from other machines")
    loaded = [m for m in ("numpy", "torch", "cv2") if m in sys.modules]
    for key, value in want.items():
        os.environ.setdefault(key, value)
    if loaded:  # too late for these libraries' dispatch; threads can still be fixed
        _pin_loaded_torch_threads()
    return {k: os.environ[k] for k in want}


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
    return (f"numerics: pinned to AVX2 (OpenBLAS {os.environ.get('OPENBLAS_CORETYPE', PINNED['OPENBLAS_CORETYPE'])}), "
            f"{threads()} threads ({SWITCH}=native to use the full CPU)")
