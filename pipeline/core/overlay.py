"""Params overlays: a protocol or recipe as the difference from the default params.

A shipped configuration (``configs/paper.yaml``, ``configs/protocol1.yaml``…) holds only the
keys it changes; :func:`compose` applies overlays in order on top of the default
(``configs/default.yaml``) and :func:`render` writes the complete result, keeping the default's
comments. So a shipped configuration can never lack a key that the default has: the one list
of keys is the default file.

Rules of an overlay (a YAML mapping):

- ``extends: other.yaml`` (a path relative to the overlay, or a list of them) applies that
  overlay first;
- a mapping is merged key by key into the value it overlays; any other value (a number, a
  string, a list) replaces it whole;
- the sections and the keys of each section must exist in the default: an unknown key is an
  error naming it (a misspelt key would otherwise change nothing, silently). Below that depth
  (the entries of a mapping-valued key such as ``relabel.box_files``) keys are free.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXTENDS = "extends"
# depth below which keys are free (1 = sections, 2 = the keys of a section)
CHECKED_DEPTH = 2


@dataclass(frozen=True)
class Change:
    """One value an overlay changed: dotted key, value before, value after, overlay file."""

    key: str
    old: Any
    new: Any
    source: str

    def describe(self) -> str:
        return f"{self.key}: {_short(self.old)} -> {_short(self.new)}  ({self.source})"


def _short(v: Any, limit: int = 70) -> str:
    text = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    text = text[:-4].strip() if text.endswith("\n...") or text.endswith(" ...") else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {str(p)!r} not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{what} {str(p)!r} is not valid YAML{at}: fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{what} {str(p)!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def overlay_chain(path: str | os.PathLike[str], _seen: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """``[(file, values)]`` in the order they apply: what ``path`` extends first, then itself."""
    p = Path(path)
    key = str(p.resolve())
    if key in _seen:
        raise ValueError(f"overlay {str(p)!r} extends itself (through {' -> '.join(_seen)})")
    data = read_yaml_mapping(p, "overlay")
    parents = data.pop(EXTENDS, None)
    if parents is None:
        parents = []
    elif isinstance(parents, str):
        parents = [parents]
    elif not (isinstance(parents, list) and all(isinstance(x, str) for x in parents)):
        raise ValueError(f"overlay {str(p)!r}: {EXTENDS} must be a path or a list of paths, got {parents!r}")
    chain: list[tuple[str, dict[str, Any]]] = []
    for parent in parents:
        chain += overlay_chain(p.parent / parent, (*_seen, key))
    chain.append((str(path), data))
    return chain


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[Change]]:
    """``base`` with ``overlay`` applied (neither is modified) and the values that changed."""
    out = copy.deepcopy(dict(base))
    changes: list[Change] = []
    _merge_into(out, overlay, source, (), changes)
    return out, changes


def _merge_into(node: dict[str, Any], overlay: Mapping[str, Any], source: str, path: tuple[str, ...],
                changes: list[Change]) -> None:
    for k, new in overlay.items():
        key = (*path, str(k))
        dotted = ".".join(key)
        if not isinstance(k, str):
            raise ValueError(f"overlay {source!r}: key {k!r} under {'.'.join(path) or 'the top level'} must be a string")
        if k not in node:
            if len(key) <= CHECKED_DEPTH:
                known = sorted(node)
                raise ValueError(
                    f"overlay {source!r}: unknown key {dotted!r} (the default params have no such "
                    f"{'section' if len(key) == 1 else 'key'}; known: {known}): fix the spelling or remove it"
                )
            node[k] = copy.deepcopy(new)
            changes.append(Change(dotted, None, new, source))
            continue
        old = node[k]
        if isinstance(old, dict) and isinstance(new, Mapping):
            _merge_into(old, new, source, key, changes)
        elif isinstance(old, dict) != isinstance(new, Mapping) and len(key) <= CHECKED_DEPTH and old is not None:
            raise ValueError(f"overlay {source!r}: {dotted!r} must be {'a mapping' if isinstance(old, dict) else 'a value'}"
                             f" as in the default params, got {new!r}")
        elif old != new:
            node[k] = copy.deepcopy(new)
            changes.append(Change(dotted, old, new, source))


def compose(default: str | os.PathLike[str], overlays: Sequence[str | os.PathLike[str]]) -> tuple[dict[str, Any], list[Change]]:
    """The default params with every overlay (and what each extends) applied in order."""
    params = read_yaml_mapping(default, "default params")
    changes: list[Change] = []
    for ov in overlays:
        for source, values in overlay_chain(ov):
            params, ch = merge(params, values, source)
            changes += ch
    return params, changes


def render(default: str | os.PathLike[str], params: Mapping[str, Any], header: str) -> str:
    """The text of a complete params file: the default file with its comments, every value set
    to ``params``'s, and ``header`` (comment lines) on top."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)  # the default file's style: "    - {...}" under a key
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(Path(default).read_text())
    _assign(doc, params)
    buf = io.StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + text


def _assign(doc: Any, values: Mapping[str, Any]) -> None:
    """Set ``doc`` (a ruamel round-trip mapping) to ``values`` in place, keeping comments on
    keys that stay; keys absent from ``values`` are removed."""
    for k in [k for k in doc if k not in values]:
        del doc[k]
    for k, v in values.items():
        if k in doc and isinstance(v, Mapping) and hasattr(doc[k], "items") and not isinstance(doc[k], str):
            _assign(doc[k], v)
        elif k not in doc or _plain(doc[k]) != v:
            doc[k] = copy.deepcopy(v)


def _plain(node: Any) -> Any:
    """A ruamel node as plain Python values (for comparing)."""
    return yaml.safe_load(yaml.safe_dump(_to_builtin(node)))


def _to_builtin(node: Any) -> Any:
    if hasattr(node, "items") and not isinstance(node, str):
        return {str(k): _to_builtin(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_to_builtin(v) for v in node]
    for t in (bool, int, float, str):
        if isinstance(node, t):
            return t(node)
    return node
