"""Static import graph of pipeline/ and stages/ (AST, no import executed).

Edges come from every ``import``/``from ... import`` statement (module level or inside a
function, so lazy imports count) and from module references written as strings, which is how
the code loads optional parts lazily: ``"pipeline.relabel.yunet"`` or
``"pipeline.manifest.w300lp:read_300w_lp"``. A stage's call ``load_config(path, "section")``
adds the module of that section's config class (``stages.common.SECTIONS``). Imports inside a
module-level ``__getattr__`` (the lazy public API of ``pipeline/__init__.py``) run only when
that attribute is asked for, never on the way to a stage's code, so they are not edges.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_MODREF = re.compile(r"^((?:pipeline|stages)(?:\.\w+)+)(?::\w+)?$")


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def all_modules() -> list[str]:
    out = []
    for top in ("pipeline", "stages"):
        for p in sorted((ROOT / top).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _resolve(name: str) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of ours (``a.b.func`` → ``a.b``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if module_path(cand) is not None:
            return cand
    return None


@cache
def direct_imports(module: str) -> frozenset[str]:
    path = module_path(module)
    assert path is not None, module
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    sections: dict[str, str] = {}
    if module != "stages.common":
        from stages.common import SECTIONS

        sections = SECTIONS
    lazy = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
            for n in ast.walk(f)}
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and module != "stages.common":
            m = _MODREF.match(node.value)
            if m:
                found.add(m.group(1))
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_config"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
            found.add(sections[node.args[1].value].split(":")[0])
    out = set()
    for name in found:
        if name.split(".")[0] in ("pipeline", "stages"):
            r = _resolve(name)
            if r is not None and r != module:
                out.add(r)
    # importing pipeline.a.b runs pipeline/__init__ and pipeline/a/__init__ first
    for r in list(out):
        parts = r.split(".")
        out.update(".".join(parts[:n]) for n in range(1, len(parts)))
    out.discard(module)
    return frozenset(out)


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(direct_imports(m))
    return seen


def find_cycle() -> list[str] | None:
    """One import cycle among our modules (package ``__init__`` edges excluded), or None."""
    graph = {m: {d for d in direct_imports(m) if module_path(d).name != "__init__.py"} for m in all_modules()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None
