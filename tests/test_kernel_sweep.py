"""Other CPUs played on one machine: under the pin, every kernel choice a CPU could make gives the
same bytes (issue 32 item 2).

Each configuration runs ``tests/helpers/kernel_probe.py`` in a fresh process (a tiny render, the
training loader's augmented crops, one stage-1 training step, one teacher pass) and compares the
sha256 of each block. A configuration stands for another CPU: the variable a library reads to pick
its kernel (``OPENBLAS_CORETYPE``, ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``,
``NPY_DISABLE_CPU_FEATURES``), a CPU count of 1 instead of 2 (the thread counts a machine would
take by itself) or libjpeg-turbo without SIMD. A CPU sets none of these variables, it just picks
the kernel: so in the pinned run the pin's own value stands where the pin has one, and only the
axes the pin does not set (CPU count, libjpeg SIMD) reach the process. A pin that misses a kernel
choice lets its variable through and the bytes differ; the native runs show that each axis does
change the bytes where the pin is off, so the comparison can see a difference.

A host whose environment sets ``OPENBLAS_CORETYPE`` keeps it: the OpenBLAS axis is skipped there
(and the test says so). Run with ``-s`` to see the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.core import numerics

REPO = Path(__file__).resolve().parents[1]
CLEARED = (numerics.SWITCH, numerics.THREADS, "JSIMD_FORCENONE")


def _has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def configurations() -> tuple[dict[str, dict[str, str]], list[str]]:
    """name → variables (``CPUS`` = CPU count via affinity); plus the axes left out and why."""
    skipped: list[str] = []
    configs: dict[str, dict[str, str]] = {"base": {}}
    host = numerics.preset().get("OPENBLAS_CORETYPE")
    if host:
        skipped.append(f"OpenBLAS axis skipped: this host's environment sets OPENBLAS_CORETYPE={host} "
                       "(never overridden, in the pin or in tests)")
    else:
        cores = ["Zen", "Sandybridge"] + (["SkylakeX"] if _has_avx512() else [])  # Haswell: the pin's own
        if not _has_avx512():
            skipped.append("OPENBLAS_CORETYPE=SkylakeX skipped: this CPU has no AVX-512 (OpenBLAS would crash)")
        configs.update({f"OPENBLAS_CORETYPE={c}": {"OPENBLAS_CORETYPE": c} for c in cores})
    # default = unset (the base); avx2 is the pin's own value
    aten = ["default"] + (["avx512"] if _has_avx512() else [])
    if not _has_avx512():
        skipped.append("ATEN_CPU_CAPABILITY=avx512 skipped: this CPU has no AVX-512 (torch stops on an illegal instruction)")
    configs.update({f"ATEN_CPU_CAPABILITY={c}": {"ATEN_CPU_CAPABILITY": c} for c in aten})
    configs["ONEDNN_MAX_CPU_ISA=SSE41"] = {"ONEDNN_MAX_CPU_ISA": "SSE41"}
    older = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"  # numpy's AVX2 loops off too: a CPU before Haswell
    configs[f"NPY_DISABLE_CPU_FEATURES={older}"] = {"NPY_DISABLE_CPU_FEATURES": older}
    if len(os.sched_getaffinity(0)) >= 2:
        configs["1 CPU (BLAS/OpenMP threads)"] = {"CPUS": "1"}
    else:
        skipped.append("CPU-count axis skipped: this process has a single CPU")
    configs["JSIMD_FORCENONE=1 (libjpeg-turbo without SIMD)"] = {"JSIMD_FORCENONE": "1"}
    return configs, skipped


def _base_env() -> dict[str, str]:
    """This environment without the pin's variables (this process was pinned by conftest), but
    with every value the host itself had set before the pin."""
    drop = set(numerics.wanted()) | set(CLEARED)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **numerics.preset(), "PYTHONPATH": str(REPO)}


def _probe(config: dict[str, str], native: bool, tmp: Path) -> dict[str, str]:
    env = _base_env()
    pinned_vars = set(numerics.wanted())
    for key, value in config.items():
        if key != "CPUS" and (native or key not in pinned_vars):  # the pin stands where it has a value
            env[key] = value
    if native:
        env[numerics.SWITCH] = "native"
    cpus = int(config.get("CPUS", 0))
    preexec = (lambda: os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))) if cpus else None
    tmp.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([sys.executable, "-m", "tests.helpers.kernel_probe", str(tmp)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900, preexec_fn=preexec)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"rc {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_kernel_choice_gives_the_same_bytes_under_the_pin(tmp_path: Path) -> None:
    configs, skipped = configurations()
    for line in skipped:
        print(line)
    # the natives of the axes a CPU changes by itself; libjpeg without SIMD only needs the pinned run
    jobs = [(name, False) for name in configs] + [(n, True) for n in configs if "JSIMD" not in n]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda job: _probe(configs[job[0]], job[1],
                                                             tmp_path / f"{len(job[0])}-{hash(job)}"), jobs)))
    pinned_base, native_base = results[("base", False)], results[("base", True)]
    assert "error" not in pinned_base, pinned_base
    differ_pinned, differ_native = {}, {}
    for (name, native), got in results.items():
        base = native_base if native else pinned_base
        diff = [k for k in base if got.get(k) != base[k]]
        (differ_native if native else differ_pinned)[name] = diff
        print(f"{'native' if native else 'pinned'}  {name:56s} {'same' if not diff else 'differ: ' + ', '.join(diff)}")
    assert not {n: d for n, d in differ_pinned.items() if d}, (
        f"under the pin these kernel choices change the bytes: { {n: d for n, d in differ_pinned.items() if d} }")
    assert any(differ_native.values()), "no native configuration differs: the sweep cannot see a difference"
