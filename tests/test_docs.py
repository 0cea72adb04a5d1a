"""The docs cannot go stale: every relative link in the README and docs/ resolves, every module
they name exists, the code map names every module, and the README stays a README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
CODE_MAP = ROOT / "docs" / "development.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MODULE = re.compile(r"(?<![\w./-])((?:pipeline|stages|benchmarks|tests)/(?:\w+/)*\w+\.py)\b")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _prose(path: Path) -> str:
    """The Markdown without its fenced code blocks (code is not a link)."""
    return FENCE.sub("", path.read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} (.+)$", _prose(path), re.M):
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return out


def broken_links(doc: Path) -> list[str]:
    """Relative links of ``doc`` whose file does not exist, or whose anchor is no heading there."""
    out = []
    for target in LINK.findall(_prose(doc)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            out.append(f"{target} (no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            out.append(f"{target} (no heading with anchor #{anchor} in {dest.name})")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    broken = broken_links(doc)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_modules_exist(doc: Path) -> None:
    missing = sorted({m for m in MODULE.findall(doc.read_text()) if not (ROOT / m).is_file()})
    assert not missing, f"{doc.relative_to(ROOT)} names modules that do not exist: {missing}"


def test_code_map_names_every_module() -> None:
    text = CODE_MAP.read_text()
    modules = [p.relative_to(ROOT).as_posix() for folder in ("pipeline", "stages", "benchmarks")
               for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "__init__.py"]
    missing = [m for m in modules if m not in text]
    assert not missing, f"{CODE_MAP.relative_to(ROOT)}'s code map lacks {missing}"


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}: the manual is docs/usage.md)"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    (tmp_path / "y.md").write_text("# Title\n## A section (`x`)\n")
    doc.write_text("[ok](y.md#a-section-x) [web](https://e.org/z) [gone](z.md) [bad](y.md#nope)\n"
                   "```\n[code](not-a-link.md)\n```\n")
    assert broken_links(doc) == [f"z.md (no file {tmp_path / 'z.md'})",
                                 "y.md#nope (no heading with anchor #nope in y.md)"]
    assert MODULE.findall("`pipeline/core/io.py`, stages/report.py, benchmarks/*.py, src/pipeline/x.py") == [
        "pipeline/core/io.py", "stages/report.py"]
    assert _slug("6. Cached teacher labels (the Zarr store)") == "6-cached-teacher-labels-the-zarr-store"
