"""dvc.lock is current for every code and config dependency (issue 32 item 3).

A commit that changes ``pipeline/``, a stage script or a config without re-running (or committing)
the stages that depend on it leaves dvc.lock stale: a fresh clone's ``dvc repro`` then re-runs those
stages and ``git status`` shows dvc.lock modified. This test recomputes DVC's md5 of each such
dependency from the working tree, the way DVC does (a file: md5 of its bytes; a folder: md5 of
its sorted ``[{"md5", "relpath"}]`` JSON listing plus ``.dir``, without what .dvcignore
ignores). Data dependencies and outputs are not rehashed: that is ``dvc status``'s job.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CODE = ("pipeline/", "stages/", "configs/")


def _ignore_patterns() -> list[str]:
    path = REPO / ".dvcignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _ignored(rel_parts: tuple[str, ...], patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("/"):  # a folder pattern: any folder on the way with that name
            if any(fnmatch.fnmatch(part, pattern[:-1]) for part in rel_parts[:-1]):
                return True
        elif fnmatch.fnmatch(rel_parts[-1], pattern):
            return True
    return False


def file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def dir_md5(path: Path, patterns: list[str]) -> str:
    """DVC's hash of a folder: md5 of the JSON list of its files' md5s, sorted by path parts."""
    entries = []
    for file in path.rglob("*"):
        parts = file.relative_to(path).parts
        if file.is_file() and not _ignored(parts, patterns):
            entries.append((parts, file_md5(file)))
    listing = [{"md5": md5, "relpath": "/".join(parts)} for parts, md5 in sorted(entries)]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def defined(stages: dict) -> Callable[[str], bool]:
    """Whether a dvc.lock entry belongs to a stage of dvc.yaml (``name``, or ``name@item`` of a
    ``foreach``/``matrix`` stage): an entry left from a stage dvc.yaml no longer has (such as
    ``synthesize`` from before it became ``synthesize@synthetic``) is not checked by DVC either."""
    plain = {n for n, body in stages.items() if not {"foreach", "matrix"} & set(body)}
    looped = set(stages) - plain
    return lambda name: name in plain or ("@" in name and name.split("@")[0] in looped)


def code_deps(lock: dict, keep: Callable[[str], bool] = lambda name: True) -> list[tuple[str, str, str]]:
    """(stage, path, md5 in dvc.lock) of every code or config dependency of the stages ``keep`` takes."""
    out = []
    for stage, entry in lock.get("stages", {}).items():
        if not keep(stage):
            continue
        for dep in entry.get("deps", []):
            if dep["path"].startswith(CODE):
                out.append((stage, dep["path"], dep["md5"]))
    return out


def stale_deps(repo: Path = REPO) -> list[str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    keep = defined(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    patterns = _ignore_patterns()
    cache: dict[str, str] = {}
    stale = []
    for stage, rel, locked in code_deps(lock, keep):
        if rel not in cache:
            path = repo / rel
            cache[rel] = (dir_md5(path, patterns) if path.is_dir() else file_md5(path) if path.is_file()
                          else "missing")
        if cache[rel] != locked:
            stale.append(f"{stage}: {rel} is {cache[rel]} in the tree, {locked} in dvc.lock")
    return stale


def test_dir_hash_is_dvcs(tmp_path: Path) -> None:
    """The folder hash reproduces DVC's own for a known listing (and skips bytecode caches)."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.py").write_text("x = 1\n")
    (tmp_path / "a.py").write_text("")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    listing = [{"md5": hashlib.md5(b"").hexdigest(), "relpath": "a.py"},
               {"md5": hashlib.md5(b"x = 1\n").hexdigest(), "relpath": "b/x.py"}]
    want = hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"
    assert dir_md5(tmp_path, ["__pycache__/", "*.pyc"]) == want


def test_dvc_lock_is_current_for_code_and_configs() -> None:
    assert code_deps(yaml.safe_load((REPO / "dvc.lock").read_text())), "no code dependencies found in dvc.lock"
    stale = stale_deps()
    assert not stale, ("dvc.lock is stale (re-run these stages and commit dvc.lock, `dvc repro`/`dvc commit`):\n"
                       + "\n".join(stale))
