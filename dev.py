#!/usr/bin/env python3
"""Bootstrap for the two Quick-start commands; needs nothing but Python >= 3.11.

    python3 dev.py repro   # make .venv, install hpekd, run `dvc repro` (synthetic default)
    python3 dev.py test    # make .venv, install hpekd + test extras, run ruff, then pytest

The environment is (re)installed only when pyproject.toml or constraints.txt changed since
the last install, so repeated runs start at once. Extra arguments go to dvc / pytest.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
EXTRAS = "test,onnx,mtcnn"


def _stamp() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    h.update(EXTRAS.encode())
    return h.hexdigest()


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - the point is to say so on an old Python
        sys.exit(f"hpekd needs Python >= 3.11, this is {sys.version.split()[0]}")
    stamp_file = VENV / ".hpekd-installed"
    if stamp_file.is_file() and stamp_file.read_text() == _stamp():
        return
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing hpekd and its dependencies (first time: several minutes, ~3 GB for torch)", flush=True)
    subprocess.run(
        [str(PY), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"),
         "-e", f"{ROOT}[{EXTRAS}]"],
        check=True, cwd=ROOT,
    )
    stamp_file.write_text(_stamp())


@functools.cache  # once per dev.py process: a second pin would find its own values and name none
def pinned_environment() -> dict[str, str]:
    """The pipeline's numerics (pipeline/core/numerics.py: the same bytes on every x86-64 CPU) for
    every process started from here; loaded by path, as the venv may not exist yet."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_hpekd_numerics", ROOT / "pipeline" / "core" / "numerics.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    before = set(os.environ)
    module.pin()
    # name what the pin added, so that a child can tell it from what the host set (the tests'
    # conftest takes these back before it pins: it must see the host's own values)
    return {**os.environ, "HPEKD_PIN_ADDED": ",".join(sorted(set(os.environ) - before))}


def run(args: list[str]) -> int:
    env = dict(pinned_environment(), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(args, cwd=ROOT, env=env).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("repro", "test"):
        print(__doc__)
        return 2
    ensure_env()
    if argv[0] == "repro":
        return run([str(BIN / "dvc"), "repro", *argv[1:]])
    # lint + import order first: cheap, and a failure names the file and line
    code = run([str(BIN / "ruff"), "check", "."])
    if code != 0:
        print("ruff found problems (fix them, or `ruff check --fix .`)", file=sys.stderr)
        return code
    code = run([str(PY), "-m", "pytest", *argv[1:]])
    if code == 5:
        print("pytest collected no tests: treating as a failure", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
