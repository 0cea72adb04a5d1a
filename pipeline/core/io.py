"""File helpers shared by every stage: atomic writes (and sweeping what killed writers left),
early checks of output paths, hashes.

Outputs are written to a temporary sibling and moved into place with ``os.replace`` so an
interrupted stage never leaves a half-written file that DVC or a later stage would trust.

The one rule for what a command may replace (docs/outputs.md): a file output replaces a file,
never a folder and never one of the command's inputs; a folder output (:func:`replace_folder`)
replaces only the command's own earlier product, recognised by the marker it wrote
(:class:`Product`), and never a folder that holds an input or lies inside one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temporaries(dest: str | os.PathLike[str]) -> int:
    """Remove the ``.<name>.<pid>.*`` temporaries of ``dest`` left by killed writers (their pid
    is gone); a live writer's temporary is left alone. Returns how many were removed."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return 0
    n = 0
    tmp_re = re.compile(rf"^\.{re.escape(dest.name)}\.(\d+)\.[^.]+(\..*)?$")
    for p in dest.parent.glob(f".{glob.escape(dest.name)}.*"):
        m = tmp_re.match(p.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        n += 1
    if n:
        log.info("removed %d temporary file(s) of %s left by an interrupted run", n, dest)
    return n


def check_output_path(path: str | os.PathLike[str], what: str = "output",
                      inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Fail early, in one line, when the file ``path`` cannot be written: a parent is a regular
    file, the nearest existing folder is not writable, ``path`` is a folder, or ``path`` is one
    of the command's ``inputs``. Call it before any work starts, so a long job never fails at
    its last step (and never after overwriting what it reads)."""
    p = Path(path)
    _check_parent(p, what)
    if p.is_dir():
        raise ValueError(f"cannot write {what} {str(p)!r}: it is a folder and a file is expected there; "
                         f"choose another path, or remove the folder yourself")
    for src in inputs:
        if src and _same(p, src):
            raise ValueError(f"cannot write {what} {str(p)!r}: it is this command's input; choose another path")


def _check_parent(p: Path, what: str) -> None:
    probe = p.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot write {what} {str(p)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {what} {str(p)!r}: no write permission in {str(probe)!r}")


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _same(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return _real(a) == _real(b)


@dataclass(frozen=True)
class Product:
    """What a command writes at a folder path, and how to recognise its earlier output there.

    ``name`` is said in refusals ("a synthetic dataset"); ``is_own(folder)`` is true only for a
    folder the command made, judged by a marker it wrote (e.g. :func:`json_marker`)."""

    name: str
    is_own: Callable[[Path], bool]


def json_marker(filename: str, keys: tuple[str, ...] = (), value: Any = None) -> Callable[[Path], bool]:
    """A :attr:`Product.is_own` test: the folder holds the JSON file ``filename`` and, when
    ``keys`` are given, the value at that key path equals ``value``."""

    def is_own(folder: Path) -> bool:
        try:
            data = json.loads((folder / filename).read_text())
        except (OSError, ValueError):
            return False
        for key in keys:
            if not isinstance(data, dict) or key not in data:
                return False
            data = data[key]
        return not keys or data == value

    return is_own


def check_folder_output(path: str | os.PathLike[str], product: Product, option: str = "--out",
                        inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Refuse, in one line, a folder output that the command may not (re)place: a file is
    there; the folder holds one of ``inputs`` or lies inside one; or the folder is not empty
    and is not the command's own earlier ``product``."""
    p = Path(path)
    what = f"{option} {str(p)!r}"
    _check_parent(p, option)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{what} is a file and a folder ({product.name}) is expected there; "
                         "choose a new path, or remove the file yourself")
    for src in inputs:
        if not src:
            continue
        if is_inside(_real(src), _real(p)):
            raise ValueError(f"{what} holds this command's input {str(src)!r}; choose a new {option} that "
                             "neither holds nor lies inside an input")
        if Path(src).is_dir() and is_inside(_real(p), _real(src)):
            raise ValueError(f"{what} lies inside this command's input {str(src)!r}; choose a new {option} "
                             "outside it")
    if p.is_dir() and any(p.iterdir()) and not product.is_own(p):
        raise ValueError(f"{what} exists and is not {product.name}: hpekd replaces only what it made; "
                         f"choose a new {option}, or remove it yourself")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap ``a`` and ``b`` (Linux renameat2 RENAME_EXCHANGE); False where the
    system or filesystem cannot, so the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    log.debug("renameat2(RENAME_EXCHANGE) %s <-> %s failed: %s", a, b, os.strerror(ctypes.get_errno()))
    return False


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def old_aside(dest: Path, pid: int | None = None) -> Path:
    """Where :func:`swap_into_place` puts the old folder while the new one moves in."""
    return dest.parent / f".{dest.name}.old-{os.getpid() if pid is None else pid}"


def swap_into_place(new: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move the complete folder ``new`` to ``dest``, replacing what is there without deleting it
    first: swapped atomically where Linux allows, else the old one is renamed aside
    (:func:`old_aside`), the new one moved in, and only then the old one removed. A kill leaves
    the old or the new folder at ``dest``, or (between the two renames of the fallback) the old
    one aside, which :func:`sweep_leftovers` moves back."""
    new, dest = Path(new), Path(dest)
    if not dest.exists() and not dest.is_symlink():
        os.rename(new, dest)
        return
    if _exchange(new, dest):
        _remove(new)  # now the old folder; a kill here leaves a temporary the next run sweeps
        return
    old = old_aside(dest)
    _remove(old)
    os.rename(dest, old)
    os.rename(new, dest)
    _remove(old)


def sweep_leftovers(dest: str | os.PathLike[str], product: Product) -> None:
    """Clear what a killed replacement of the folder ``dest`` left: its temporaries
    (:func:`sweep_temporaries`) and an old folder renamed aside (:func:`old_aside`) by a dead
    process, which goes back to ``dest`` when ``dest`` is missing and is removed otherwise. Only
    names this module makes for ``dest`` are touched, and an aside folder only when it is ``product``."""
    dest = Path(dest)
    sweep_temporaries(dest)
    if not dest.parent.is_dir():
        return
    aside_re = re.compile(rf"^\.{re.escape(dest.name)}\.old-(\d+)$")
    for p in sorted(dest.parent.glob(f".{glob.escape(dest.name)}.old-*")):
        m = aside_re.match(p.name)
        if m is None or pid_alive(int(m.group(1))) or not p.is_dir() or not product.is_own(p):
            continue
        if not dest.exists():
            os.rename(p, dest)
            log.warning("restored %s: a run killed while replacing it had moved it aside", dest)
        else:
            _remove(p)
            log.info("removed %s, left by a run killed while replacing %s", p, dest)


@contextlib.contextmanager
def replace_folder(path: str | os.PathLike[str], product: Product, option: str = "--out",
                   inputs: Iterable[str | os.PathLike[str]] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it replaces
    ``path`` (:func:`swap_into_place`). Refused first (:func:`check_folder_output`) unless
    ``path`` is absent, empty or the command's own earlier ``product``, and holds no input nor
    lies inside one. On error the temporary is removed and ``path`` is left as it was."""
    dest = Path(path)
    inputs = list(inputs)
    check_folder_output(dest, product, option, inputs)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(dest, product)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        check_folder_output(dest, product, option, inputs)  # nothing foreign appeared meanwhile
        swap_into_place(tmp, dest)
    finally:
        if tmp.exists():
            _remove(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; on success move it into place.

    For files (folders: :func:`replace_folder`): a folder at ``path`` is refused, never
    replaced. On error the temporary is removed and ``path`` is left as it was. The temporary
    is named ``.<name>.<pid>.<random><suffix>``, so one left by a killed run is swept by the
    next write of the same path (:func:`sweep_temporaries`).
    """
    dest = Path(path)
    check_output_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if dest.is_dir() and not dest.is_symlink():
            raise ValueError(f"cannot write {str(dest)!r}: a folder appeared there while it was being written")
        os.replace(tmp, dest)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """``path`` is ``root`` or lies under it (both taken relative to the working directory;
    nothing needs to exist)."""
    p, r = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return p == r or r in p.parents


def check_inside(paths: list[tuple[str, str]], root: str | os.PathLike[str]) -> None:
    """Refuse an input that lies outside the pipeline's ``data_root`` (DVC would not see it change)."""
    for key, path in paths:
        if not is_inside(path, root):
            raise ValueError(
                f"{key} = {str(path)!r} lies outside data_root {str(root)!r}: the pipeline depends on data_root only, "
                "so DVC would not rerun when this input changes; move it under data_root or set data_root to a folder "
                "that holds every dataset and box file"
            )
