"""The layout by role stays navigable and DVC's code deps cannot go stale.

Every DVC stage's code deps (folders of pipeline/, plus its stage module) must cover the
import closure of the stage's command, so editing any module a stage runs (normalisation,
model, views, ...) reruns that stage and everything after it instead of leaving cached
outputs silently stale. Lower layers never import upper ones, and there is no import circle.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import yaml

from tests.helpers.imports import ROOT, all_modules, closure, direct_imports, find_cycle, module_path

# pipeline sub-package -> layer; an import may only go to the same or a lower layer
LAYERS = {
    "core": 0,
    "manifest": 1, "synth": 1, "model": 1,
    "data": 2, "relabel": 2,
    "teacher": 3,
    "training": 4, "inference": 4,
    "evaluation": 5,
}
HEAVY = ("torch", "torchvision", "cv2", "numpy", "pandas", "zarr", "dask", "albumentations", "matplotlib")


def _stages() -> dict[str, dict]:
    return {name: st.get("do", st) for name, st in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}


def _stage_module(body: dict) -> str:
    words = body["cmd"].split()
    return "stages." + words[words.index("hpekd") + 1].replace("-", "_")


def _is_code(dep: str) -> bool:
    return dep.startswith(("pipeline", "stages"))


def _has_code(module: str) -> bool:
    """False for a module that holds nothing but a docstring (an empty package marker)."""
    body = ast.parse(module_path(module).read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def uncovered(module: str, deps: list[str]) -> list[str]:
    """Modules run by stage command ``module`` that no entry of ``deps`` covers."""
    code = [d.rstrip("/") for d in deps if _is_code(d)]
    out = []
    for m in sorted(closure(module)):
        rel = module_path(m).relative_to(ROOT).as_posix()
        if not _has_code(m):
            continue
        if not any(rel == d or rel.startswith(d + "/") for d in code):
            out.append(rel)
    return out


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_its_code(stage: str) -> None:
    body = _stages()[stage]
    missing = uncovered(_stage_module(body), body["deps"])
    assert not missing, f"dvc.yaml stage {stage!r} runs {missing} but does not list them (or their folder) in deps"
    for dep in body["deps"]:
        if _is_code(dep):
            assert (ROOT / dep).exists(), f"stage {stage!r}: code dep {dep!r} does not exist"


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_every_code_dep_is_needed(stage: str) -> None:
    """Deleting any one code dep of a stage leaves some module it runs uncovered (so the
    coverage test above would fail), and no stage lists code it does not run."""
    body = _stages()[stage]
    module = _stage_module(body)
    for dep in [d for d in body["deps"] if _is_code(d)]:
        rest = [d for d in body["deps"] if d != dep]
        assert uncovered(module, rest), f"stage {stage!r}: code dep {dep!r} covers nothing the stage runs"


def test_coverage_check_catches_a_missing_module() -> None:
    body = _stages()["teacher_labels"]
    deps = [d for d in body["deps"] if d != "pipeline/core"]
    assert "pipeline/core/images.py" in uncovered(_stage_module(body), deps)


def test_no_import_cycle() -> None:
    assert find_cycle() is None, f"import cycle: {' -> '.join(find_cycle() or [])}"


def test_lower_layers_never_import_upper_ones() -> None:
    bad = []
    for m in all_modules():
        parts = m.split(".")
        if parts[0] != "pipeline" or len(parts) < 2 or parts[1] not in LAYERS:
            continue
        for d in direct_imports(m):
            dp = d.split(".")
            if len(dp) >= 2 and dp[0] == "pipeline" and dp[1] in LAYERS and LAYERS[dp[1]] > LAYERS[parts[1]]:
                bad.append(f"{m} -> {d}")
    assert not bad, bad


def test_every_subpackage_is_placed_and_says_what_it_holds() -> None:
    for init in sorted((ROOT / "pipeline").glob("*/__init__.py")):
        name = init.parent.name
        assert name in LAYERS, f"pipeline/{name}/ has no layer in tests/test_layout.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and 1 <= len(doc.strip().splitlines()) <= 2, f"pipeline/{name}/__init__.py: a two-line docstring"
    assert sorted(p.name for p in (ROOT / "pipeline").glob("*.py")) == ["__init__.py"], \
        "pipeline/ holds sub-packages only (put new modules in the folder of their role)"


def test_import_pipeline_is_light() -> None:
    code = f"import pipeline, sys; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_dvc_ignores_bytecode_in_code_deps() -> None:
    """Folder deps are hashed file by file: Python's caches would make them differ per machine."""
    lines = (ROOT / ".dvcignore").read_text().split()
    assert "__pycache__/" in lines and "*.pyc" in lines
