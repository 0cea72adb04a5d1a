"""File helpers shared by every stage: atomic writes (and sweeping what killed writers left),
early checks of output paths, hashes.

Outputs are written to a temporary sibling and moved into place with ``os.replace`` so an
interrupted stage never leaves a half-written file that DVC or a later stage would trust.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
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


def check_output_path(path: str | os.PathLike[str], what: str = "output") -> None:
    """Fail early, in one line, when ``path`` cannot be written: a parent is a regular file,
    the nearest existing folder is not writable, or the path is a folder. Call it before any
    work starts, so a long job never fails at its last step."""
    p = Path(path)
    probe = p.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot write {what} {str(p)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {what} {str(p)!r}: no write permission in {str(probe)!r}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place.

    Works for files and directories. On error the temporary is removed and ``path`` is
    left as it was. The temporary is named ``.<name>.<pid>.<random><suffix>``, so one left
    by a killed run is swept by the next write of the same path (:func:`sweep_temporaries`).
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
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


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
