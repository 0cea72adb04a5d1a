"""Reading and detecting on every distinct image, in worker processes, cached per chunk.

Records are appended atomically as ``<cache_dir>/<hash of detector settings>/part-*.jsonl`` keyed
by ``dataset/image_path`` and the file's size and mtime, so an interrupted or re-tuned relabel
run only reads and detects the images that are not in the cache yet.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.core.io import Product, atomic_path
from pipeline.relabel.detect import Detector, backend_version, get_detector


def image_key(dataset: str, image_path: str) -> str:
    return f"{dataset}/{image_path}"


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1

log = logging.getLogger(__name__)


def is_relabel_cache(folder: Path) -> bool:
    """A relabel cache: only ``<16 hex digits>/`` folders, each with its settings.json."""
    return all(e.is_dir() and re.fullmatch(r"[0-9a-f]{16}", e.name) is not None and (e / "settings.json").is_file()
               for e in folder.iterdir())


# what `hpekd relabel --cache` may write into (it adds files, never removes any)
RELABEL_CACHE = Product("an hpekd relabel cache", is_relabel_cache)

_WORKER_DETECTOR: dict[str, Detector] = {}


def _init_worker() -> None:
    # one thread per process: the pool provides the parallelism
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _process_chunk(items: Sequence[tuple[str, str]], spec: tuple[str, dict] | None,
                   detector: Detector | None = None) -> list[dict]:
    """Read (and detect on) each image ``(key, path)``; one JSON-able record per image."""
    from pipeline.core.images import read_image

    if spec is not None and detector is None:
        tag = json.dumps(spec, sort_keys=True)
        if tag not in _WORKER_DETECTOR:
            _WORKER_DETECTOR[tag] = get_detector(spec[0], **spec[1])
        detector = _WORKER_DETECTOR[tag]
    out = []
    for key, path in items:
        size, mtime = _stat(path)
        rec: dict[str, Any] = {"key": key, "size": size, "mtime_ns": mtime, "h": 0, "w": 0, "dets": [], "error": ""}
        try:
            img = read_image(path)
        except FileNotFoundError:
            rec["error"] = f"image not found: {path}"
        except ValueError as exc:
            rec["error"] = f"unreadable image: {exc}"
        else:
            rec["h"], rec["w"] = int(img.shape[0]), int(img.shape[1])
            if detector is not None:
                try:
                    rec["dets"] = [[*map(float, d.box), float(d.score)] for d in detector.detect(img)]
                except Exception as exc:  # noqa: BLE001 - one bad image must not end the run
                    rec["error"] = f"detector failed: {type(exc).__name__}: {exc}"
                    rec["transient"] = True
        out.append(rec)
    return out


class _Cache:
    """Append-only per-chunk JSONL parts under ``root/<tag>``; later parts win."""

    def __init__(self, root: Path | None, tag: str, meta: dict) -> None:
        self.dir = None if root is None else Path(root) / tag
        self.records: dict[str, dict] = {}
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "settings.json"
        if not meta_path.exists():
            with atomic_path(meta_path) as tmp:
                tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for part in sorted(self.dir.glob("part-*.jsonl"), key=lambda p: p.stat().st_mtime_ns):
            for line in part.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.records[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("relabel cache: skipping a bad line in %s", part)

    def lookup(self, key: str, path: str) -> dict | None:
        rec = self.records.get(key)
        if rec is None:
            return None
        return rec if (rec.get("size"), rec.get("mtime_ns")) == _stat(path) else None

    def add(self, records: list[dict]) -> None:
        keep = [r for r in records if not r.get("transient")]
        for r in records:
            self.records[r["key"]] = r
        if self.dir is None or not keep:
            return
        with atomic_path(self.dir / f"part-{uuid.uuid4().hex}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))


def read_images(images: dict[str, str], spec: tuple[str, dict] | None, detector: Detector | None,
                chunk_size: int, workers: int, cache_dir: str | os.PathLike | None,
                progress: bool) -> tuple[dict, dict]:
    """Records for every image key (from the cache or computed); returns (records, counts).

    ``chunk_size`` images per task and cache part; ``workers`` processes (0 = all cores)."""
    meta = {"mode": "detect" if spec else "read", "detector": spec[0] if spec else None,
            "options": spec[1] if spec else None, "version": backend_version(spec[0]) if spec else ""}
    tag = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    cache = _Cache(None if cache_dir is None else Path(cache_dir), tag, meta)
    records: dict[str, dict] = {}
    todo = []
    for key, path in images.items():
        rec = cache.lookup(key, path)
        if rec is None:
            todo.append((key, path))
        else:
            records[key] = rec
    counts = {"images": len(images), "from_cache": len(records), "computed": len(todo)}
    if todo:
        chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
        workers = workers or os.cpu_count() or 1
        workers = min(workers, len(chunks))
        what = f"detect ({spec[0]})" if spec else "read images"
        log.info("relabel: %d images (%d from cache), %d to %s with %d process(es)",
                 len(images), counts["from_cache"], len(todo), what, workers)
        bar = tqdm(total=len(todo), desc=f"relabel: {what}", unit="img", disable=not progress)
        try:
            if workers <= 1:
                for chunk in chunks:
                    recs = _process_chunk(chunk, spec, detector)
                    cache.add(recs)
                    records.update((r["key"], r) for r in recs)
                    bar.update(len(chunk))
            else:
                ctx = multiprocessing.get_context("spawn")  # fork after OpenMP use can deadlock
                with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                    futures = {pool.submit(_process_chunk, chunk, spec): len(chunk) for chunk in chunks}
                    try:
                        for fut in cf.as_completed(futures):
                            recs = fut.result()
                            cache.add(recs)
                            records.update((r["key"], r) for r in recs)
                            bar.update(futures[fut])
                    except BaseException:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
        finally:
            bar.close()
    return records, counts
