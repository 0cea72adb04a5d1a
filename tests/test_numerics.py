"""The pinned numerics (pipeline/core/numerics.py): every process the pipeline starts runs numpy,
OpenCV, MKL, oneDNN and ATen capped at AVX2 with a fixed thread count, unless
HPEKD_NUMERICS=native; a bad setting is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import numerics

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import json, multiprocessing as mp, os, sys\n"
    "{prelude}\n"
    "import cv2, numpy, torch\n"
    "def child(q):\n"
    "    import torch\n"
    "    q.put(torch.backends.cpu.get_cpu_capability())\n"
    "if __name__ == '__main__':\n"
    "    ctx = mp.get_context('spawn'); q = ctx.Queue(); p = ctx.Process(target=child, args=(q,)); p.start()\n"
    "    print(json.dumps({'aten': torch.backends.cpu.get_cpu_capability(), 'threads': torch.get_num_threads(),\n"
    "        'npy_v4': bool(numpy._core._multiarray_umath.__cpu_features__.get('X86_V4')), 'child': q.get(),\n"
    "        'mkl': os.environ.get('MKL_CBWR'), 'cv2': cv2.getCPUFeaturesLine()}))\n"
    "    p.join()\n"
)


def _probe(prelude: str, drop: tuple[str, ...] = (), **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in numerics.wanted()
             and k not in (numerics.SWITCH, numerics.THREADS)}
    clean.update(numerics.preset())  # what the host itself set stays (never overridden or unset)
    for name in drop:
        clean.pop(name, None)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # a file, not -c: the spawned child re-imports the script
        script = Path(tmp) / "probe.py"
        script.write_text(PROBE.replace("{prelude}", prelude))
        res = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                             env={**clean, "PYTHONPATH": str(REPO), **env}, timeout=120)
    assert res.returncode == 0, res.stderr
    import json

    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_hpekd_entry_point_pins_every_library_and_its_children() -> None:
    got = _probe("import stages.cli")
    assert got["aten"] == "AVX2" and got["child"] == "AVX2", "ATen (and a spawned worker) capped at AVX2"
    assert got["threads"] == numerics.DEFAULT_THREADS and got["mkl"] == "COMPATIBLE"
    assert got["npy_v4"] is False, "numpy's AVX-512 loops (sin/cos, reductions) are off"
    on = [f for f in got["cv2"].split() if f.startswith("*") and not f.endswith("?")]
    assert not [f for f in on if "AVX512" in f or "VNNI" in f], f"OpenCV dispatches beyond AVX2: {on}"


def test_native_switch_and_thread_count() -> None:
    bare = _probe("")
    native = _probe("import stages.cli", HPEKD_NUMERICS="native")
    assert native["aten"] == bare["aten"], "native = what the CPU picks"
    # MKL_CBWR already in the environment (e.g. exported by dev.py, which pins every process it
    # starts) is the host's value: native keeps it, as it keeps any value it did not set itself
    if "MKL_CBWR" not in numerics.preset():
        assert native["mkl"] is None, "native = what the CPU picks"
    # HPEKD_THREADS sets the thread variables where nothing set them before: under dev.py (CI) the
    # test process inherits dev.py's pin (OMP_NUM_THREADS=2), which a child keeps as a preset value
    assert _probe("import stages.cli", drop=numerics.THREAD_VARS, HPEKD_THREADS="1")["threads"] == 1


def _cli_help(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in numerics.wanted() and k not in (numerics.SWITCH,
                                                                                              numerics.THREADS)}
    return subprocess.run([sys.executable, "-m", "stages.cli", "--help"], cwd=REPO, capture_output=True, text=True,
                          env={**clean, **numerics.preset(), "PYTHONPATH": str(REPO), **env}, timeout=120)


def _skip_if_host_sets(*names: str) -> None:
    host = [n for n in names if n in numerics.preset()]
    if host:
        pytest.skip(f"this host's environment sets {', '.join(host)}: tests never override it")


@pytest.mark.parametrize("var,value,says", [
    (numerics.SWITCH, "fast", "HPEKD_NUMERICS='fast' is neither 'pinned' nor 'native': running pinned"),
    (numerics.THREADS, "two", "HPEKD_THREADS='two' is not a whole number >= 1: running 2 threads"),
    ("OPENBLAS_CORETYPE", "SkylakeX", "OPENBLAS_CORETYPE='SkylakeX' (set before hpekd started) is kept, but the "
                                      "pin wants 'Haswell': it changes numpy's and scipy's BLAS kernels"),
])
def test_bad_or_contradicting_setting_is_one_warning_line_and_the_run_starts(var: str, value: str, says: str) -> None:
    _skip_if_host_sets(var)
    res = _cli_help(**{var: value})
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("OPENCV:")]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and says in lines[0], res.stderr


def test_agreeing_settings_are_quiet() -> None:
    """A host that sets OPENBLAS_CORETYPE=Zen (the same kernels) or the pin's own values: no warning."""
    _skip_if_host_sets("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "ATEN_CPU_CAPABILITY")
    res = _cli_help(OPENBLAS_CORETYPE="Zen", OPENBLAS_L2_SIZE="512", ATEN_CPU_CAPABILITY="AVX2")
    assert res.returncode == 0 and not [ln for ln in res.stderr.splitlines() if not ln.startswith("OPENCV:")]


def test_pin_keeps_what_the_environment_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never override a value the environment has (hosts set OPENBLAS_CORETYPE for a reason)."""
    _skip_if_host_sets("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Zen")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    got = numerics.pin()
    assert got["OPENBLAS_CORETYPE"] == "Zen" and got["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv(numerics.SWITCH, "native")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    assert numerics.pin() == {} and os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"


def test_this_test_session_runs_pinned() -> None:
    """conftest pins before torch loads: tests see the numerics the pipeline runs with."""
    import torch

    if numerics.mode() == "native":
        pytest.skip("HPEKD_NUMERICS=native for this session")
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"


def test_numerics_cost_benchmark_smoke() -> None:
    res = subprocess.run([sys.executable, "benchmarks/numerics_cost.py", "--smoke"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "pinned: torch CPU capability AVX2" in res.stdout and res.stdout.strip().splitlines()[-1].startswith("ratio ")


def test_a_parents_pin_is_not_taken_for_the_hosts() -> None:
    """dev.py pins the processes it starts, and pytest's controller pins its xdist workers: a
    process under them must still see only what the host set (``numerics.preset()``), or every
    test that skips where the host set a variable skips always (as it did in CI)."""
    host = numerics.preset()
    clean = {k: v for k, v in os.environ.items()
             if k not in numerics.wanted() and k not in (numerics.SWITCH, numerics.THREADS, "HPEKD_PIN_ADDED")}
    env = {**clean, **host, "PYTHONPATH": str(REPO)}
    # twice, as dev.py does (ruff, then pytest): the second call must still name what the pin added
    show = "import json, dev; dev.pinned_environment(); print(json.dumps(dev.pinned_environment()))"
    pinned = json.loads(subprocess.run([sys.executable, "-c", show], cwd=REPO, env=env, capture_output=True,
                                       text=True, timeout=120, check=True).stdout)
    assert "OPENBLAS_CORETYPE" in pinned and pinned["HPEKD_PIN_ADDED"]  # dev.py's children are pinned
    # a test process under dev.py, and an xdist worker under that test process
    read = ("import json, os, tests.conftest; from pipeline.core import numerics; "
            "print(json.dumps([numerics.preset(), dict(os.environ)]))")
    seen, worker_env = json.loads(subprocess.run([sys.executable, "-c", read], cwd=REPO, env=pinned,
                                                 capture_output=True, text=True, timeout=300, check=True).stdout)
    assert seen == host
    seen_in_worker, _ = json.loads(subprocess.run([sys.executable, "-c", read], cwd=REPO, env=worker_env,
                                                  capture_output=True, text=True, timeout=300, check=True).stdout)
    assert seen_in_worker == host
