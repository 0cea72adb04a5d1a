"""Run the real pipeline for a params overlay in a work folder: ``run_pipeline(overlay, out)``.

A benchmark states *what* it measures (its arms, as params overlays) and leaves *how* to the
pipeline: the work folder ``out`` is a DVC project without git (``dvc init --no-scm``) that links
to this repository's ``dvc.yaml`` and the code its stages depend on (``pipeline/``, ``stages/``,
``configs/``), holds its own ``params.yaml`` (``configs/default.yaml`` + the overlay, composed by
:func:`compose_params`) and keeps its cache in a folder shared by every work folder of one
benchmark run (``dvc cache dir``). ``dvc repro`` then does all the resuming:

- a stage whose deps and params did not change since it last ran in this folder is skipped;
- a stage that ran with the same command, deps and params in *any* folder sharing the cache is
  restored from DVC's run cache instead of recomputed — its ``cache: false`` metrics included
  (checked with DVC 3.67: the run cache commits uncached outputs for itself). So three student
  seeds cost one synthesize, relabel and teacher; flipping a folder back to an overlay it ran
  before restores the students instead of retraining them;
- **except** ``teacher_labels``: its store is ``persist: true`` (an interrupted job resumes from
  its finished shards), and DVC keeps no run cache for a stage with a persistent output. A store
  is therefore made once per work folder; a benchmark that needs one store for several overlays
  (e.g. student seeds) runs them one after the other in the *same* folder.

Results are read back from the folder's ``metrics/<run>/`` files with the report's readers
(:meth:`Run.eval`, :meth:`Run.errors`). The stages' ``hpekd`` command runs this checkout's code
(``python -m stages.cli`` with the repository on ``PYTHONPATH``) under the benchmark's numerics
(``HPEKD_NUMERICS`` and the pinned thread variables pass through the environment).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "configs" / "default.yaml"
# what dvc.yaml's commands and deps name, linked into every work folder
LINKS = ("dvc.yaml", "pipeline", "stages", "configs")

log = logging.getLogger("benchmarks.pipeline")


def compose_params(overlay: Mapping[str, Any], where: str = "benchmark overlay") -> dict[str, Any]:
    """configs/default.yaml with ``overlay`` merged in (an unknown key is an error), checked as
    ``hpekd params apply`` checks (paths aside: they are relative to the work folder). The one
    place the benchmarks compose params: repoint it when ``Params.compose`` lands."""
    from pipeline.core.overlay import compose, merge
    from stages.params import check_params

    params, _ = compose(DEFAULT, [])
    params, _ = merge(params, overlay, where)
    check_params(params, where, check_paths=False)
    return params


def has_key(dotted: str) -> bool:
    """Whether configs/default.yaml has the (dotted) key: lets a benchmark use a knob only where
    this tree has it."""
    from pipeline.core.overlay import compose

    node: Any = compose(DEFAULT, [])[0]
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def section_config(params: Mapping[str, Any], section: str) -> Any:
    """The typed config of one params section (what the stage builds from it)."""
    from pipeline.core.config import config_from_mapping
    from stages.common import section_class

    return config_from_mapping(section_class(section), params[section], section, require_all=True)


@dataclass(frozen=True)
class Run:
    """A work folder after ``dvc repro``: its params and readers of its results."""

    out: Path
    params: dict[str, Any]

    def path(self, rel: str) -> Path:
        return self.out / rel

    @property
    def metrics(self) -> Path:
        return self.out / "metrics" / self.params["run"]

    def eval(self, role: str, backbone: str) -> dict[str, Any]:
        """``metrics/<run>/eval/<role>-<backbone>.json``, checked by the report's parser."""
        from pipeline.evaluation.results import parse_eval

        path = self.metrics / "eval" / f"{role}-{backbone}.json"
        data = json.loads(path.read_text())
        parse_eval(data, str(path))
        return data

    def errors(self, role: str, backbone: str) -> Any:
        """Per-face errors ``metrics/<run>/errors/<role>-<backbone>.parquet`` (a DataFrame)."""
        from pipeline.evaluation.errors import read_errors

        return read_errors(self.metrics / "errors" / f"{role}-{backbone}.parquet")

    def training(self, name: str) -> dict[str, Any]:
        """A training stage's metrics, e.g. ``train_student_nokd_resnet18``."""
        return json.loads((self.metrics / f"{name}.json").read_text())


def run_pipeline(overlay: Mapping[str, Any], out: Path, until: Sequence[str] | None = None,
                 cache: Path | None = None) -> Run:
    """Make ``out`` hold the pipeline's outputs for ``overlay`` (``dvc repro`` of the stages
    ``until`` names and what they need; all stages when None). ``cache``: the DVC cache shared with
    other work folders (default ``out/../dvc-cache``). Raises RuntimeError with the tail of DVC's
    output when a stage fails; the whole output is appended to ``out/repro.log``."""
    out = Path(out).resolve()
    params = compose_params(overlay)
    _prepare(out, Path(cache).resolve() if cache else out.parent / "dvc-cache")
    from pipeline.core.overlay import render

    (out / "params.yaml").write_text(render(DEFAULT, params, "Written by benchmarks/_pipeline.py."))
    _dvc(out, ["repro", *(until or [])])
    return Run(out, params)


def _prepare(out: Path, cache: Path) -> None:
    """A DVC project without git in ``out`` (once), its cache in ``cache``, links to the code."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / ".dvc").is_dir():
        _dvc(out, ["init", "--no-scm", "-q"])
        cache.mkdir(parents=True, exist_ok=True)
        _dvc(out, ["cache", "dir", str(cache)])
    for name in LINKS:
        link = out / name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(REPO / name)
    shim = out / ".bin" / "hpekd"
    if not shim.is_file():
        shim.parent.mkdir(exist_ok=True)
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m stages.cli "$@"\n')
        shim.chmod(0o755)


def _env(out: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{out / '.bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def _dvc(out: Path, args: list[str]) -> None:
    log.info("dvc %s  (in %s)", " ".join(args), out)
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=out, env=_env(out), capture_output=True,
                          text=True)
    with open(out / "repro.log", "a") as f:
        f.write(f"$ dvc {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"dvc {' '.join(args)} failed in {out} (exit {proc.returncode}):\n" + "\n".join(tail))
