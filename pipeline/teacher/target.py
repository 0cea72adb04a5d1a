"""Where a teacher-label job writes its store: resume the store at ``--out`` when it was made
for the same run, otherwise build the new one beside it (local paths) and swap it in when
complete, or rebuild it in place (other URLs); never overwrite a directory that is not a store.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline.core.io import Product, check_folder_output, swap_into_place, sweep_leftovers
from pipeline.teacher import labelstore
from pipeline.teacher.labelstore import local_path
from pipeline.teacher.provenance import diff_attrs

log = logging.getLogger(__name__)


def is_label_store(folder: Path) -> bool:
    """An hpekd label store: its zarr.json is a zarr v3 group whose ``format`` attribute is
    :data:`labelstore.FORMAT`, or has no attributes yet (a store a killed job had begun:
    :func:`labelstore.create_layout` writes them last)."""
    try:
        meta = json.loads((folder / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return False
    attrs = meta.get("attributes") or {}
    return isinstance(attrs, dict) and (not attrs or attrs.get("format") == labelstore.FORMAT)


LABEL_STORE = Product("an hpekd label store", is_label_store)


def _guard_foreign(out: str) -> None:
    """Refuse to overwrite a local path that is not an hpekd label store (one line)."""
    local = local_path(out)
    if local is not None:
        check_folder_output(local, LABEL_STORE)


def beside_path(out: str) -> str:
    """Where a store whose provenance differs is rebuilt before it replaces ``out``."""
    local = local_path(out)
    assert local is not None
    return str(local.parent / f".{local.name}.next")


def _intact(path: str, attrs: dict[str, Any]) -> bool:
    """A store at ``path`` made for exactly ``attrs`` whose layout opens (shards may be damaged)."""
    old = labelstore.existing_attrs(path)
    if old is None or diff_attrs(old, attrs):
        return False
    try:
        labelstore.open_store(path)
    except ValueError as exc:
        log.warning("%s", exc)
        return False
    return True


def choose_target(out: str, attrs: dict[str, Any]) -> tuple[str, bool]:
    """(store to write, resume?) without changing anything on storage.

    A matching store at ``out`` is resumed. A different or damaged one is kept until the
    store replacing it is complete: on a local path the new store is built beside it
    (:func:`beside_path`) and swapped in at the end; on other URLs it is rebuilt in place,
    after every input has been checked.
    """
    if _intact(out, attrs):
        return out, True
    local = local_path(out)
    if local is None or not local.exists() or (local.is_dir() and not any(local.iterdir())):
        old = labelstore.existing_attrs(out)
        if old is not None:
            log.warning("store %s was made for a different run (%s): rebuilding it in place", out,
                        "; ".join(diff_attrs(old, attrs)[:3]))
        return out, False
    _guard_foreign(out)
    nxt = beside_path(out)
    old = labelstore.existing_attrs(out)
    why = "; ".join(diff_attrs(old, attrs)[:3]) if old else "its layout is damaged"
    log.warning("store %s was made for a different run (%s): building the new store in %s, it replaces the old "
                "one only when complete", out, why, nxt)
    return nxt, _intact(nxt, attrs)


def swap_in(target: str, final: str) -> None:
    """Replace ``final`` by the complete store ``target`` (local paths), old one swapped out
    rather than deleted first (:func:`pipeline.core.io.swap_into_place`)."""
    dest, src = local_path(final), local_path(target)
    assert dest is not None and src is not None
    swap_into_place(src, dest)
    sweep_leftovers(dest, LABEL_STORE)
    log.info("new store complete: replaced %s", final)


def finish_interrupted_swap(out: str, attrs: dict[str, Any]) -> None:
    """Swap in a complete store left beside a missing ``out`` by a run killed between building
    it and swapping it in."""
    local = local_path(out)
    if local is not None and not local.exists() and _intact(beside_path(out), attrs) and \
            labelstore.verified_shards(labelstore.open_store(beside_path(out)), beside_path(out)).all():
        swap_in(beside_path(out), out)
