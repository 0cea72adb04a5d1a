"""Inference for users: faces in images, folders and videos → (pitch, yaw, roll).

:class:`Predictor` loads any stage-1 or stage-2 checkpoint, finds faces with the relabeling
detector (:func:`pipeline.relabel.detect.get_detector`), crops each face exactly the way training
does (:func:`pipeline.core.geometry.crop` of the detector box to the checkpoint's input size,
ImageNet normalisation on the device), and predicts with the smallest-bin RvC head. Faces are
batched across images and video frames. With ``ensemble=(p, s)`` every face is evaluated by
the convolutional ensemble of DESIGN §5 (A = (2p/s + 1)² shifted crops cut on the device from
one padded region Z, softmax averaged, then decoded).

Results are plain dict rows (see :data:`ROW_FIELDS`); a file or frame that cannot be used
(unreadable image or video, no face found) gives one row with ``error`` set and the run goes on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
import torch

from pipeline.core.device import resolve_device
from pipeline.core.geometry import clip_box, crop
from pipeline.core.images import IMAGE_EXTS, normalize, read_image, write_image
from pipeline.core.io import atomic_path
from pipeline.model.checkpoint import input_size_of, load_checkpoint, model_from_checkpoint
from pipeline.teacher.ensemble import ensemble_probs, ensemble_size, validate_ensemble

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
ROW_FIELDS = ("file", "frame", "face", "x1", "y1", "x2", "y2", "det_score", "pitch", "yaw", "roll", "error")
NO_FACE = "no face found"
MIN_BOX_SIZE = 4.0  # px; relabel.min_box_size default
FORMATS = ("jsonl", "csv")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputItem:
    """One input: an image file, a video file, or an in-memory RGB array."""

    kind: str  # "image" | "video" | "array"
    name: str  # what the output's ``file`` column says
    path: Path | None = None
    draw_name: str = ""  # relative path of the drawing under --draw
    array: np.ndarray | None = field(default=None, compare=False, repr=False)


def collect_inputs(paths: Iterable[str | os.PathLike[str] | np.ndarray]) -> list[InputItem]:
    """Expand files, directories (recursively: image extensions) and arrays into items.

    A path that does not exist, or a directory without images, raises ``ValueError`` before
    any work is done (typos fail fast). Files with a video extension are read as videos; any
    other file is read as an image (an undecodable one becomes an error row later).
    """
    items: list[InputItem] = []
    for i, p in enumerate(paths):
        if isinstance(p, np.ndarray):
            items.append(InputItem("array", f"<array {i}>", draw_name=f"array_{i:04d}.png", array=p))
            continue
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise ValueError(
                    f"directory {str(path)!r} has no images (looked recursively for {', '.join(sorted(IMAGE_EXTS))})"
                )
            for f in found:
                rel = f.relative_to(path)
                items.append(InputItem("image", str(f), f, str(Path(path.resolve().name) / rel)))
        elif path.is_file():
            kind = "video" if path.suffix.lower() in VIDEO_EXTS else "image"
            items.append(InputItem(kind, str(path), path, path.name))
        elif not path.exists():
            raise ValueError(f"input {str(path)!r} does not exist")
        else:
            raise ValueError(f"input {str(path)!r} is neither a file nor a directory")
    if not items:
        raise ValueError("no inputs given: pass image files, directories or videos")
    return items


def parse_ensemble(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"15,5"`` or ``(15, 5)`` → (p, s), validated (p a multiple of s, DESIGN §5); None → None."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        parts = text.replace(" ", "").split(",")
        try:
            p, s = (int(v) for v in parts)
        except ValueError:
            raise ValueError(f"ensemble {text!r} must be 'p,s' (two integers, e.g. 15,5)") from None
    else:
        if len(text) != 2:
            raise ValueError(f"ensemble {text!r} must be (p, s)")
        p, s = (int(v) for v in text)
    validate_ensemble(p, s)
    return p, s


# --------------------------------------------------------------------------- predictor


@dataclass
class _Entry:
    item: InputItem
    frame: int | None
    image: np.ndarray | None = None  # kept only when drawing
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    error: str | None = None
    angles: np.ndarray | None = None
    fps: float = 0.0  # videos: frames per second of the source (for the drawn mp4)


class Predictor:
    """Head pose for every face in images and videos.

    Parameters
    ----------
    checkpoint : path to a stage-1 (``hpekd train-teacher``) or stage-2 (``hpekd train-student``)
        checkpoint, or an already-loaded checkpoint dict.
    device : ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    detector : a detector name (``"yunet"``, ``"mtcnn"``, see :mod:`pipeline.relabel.detect`) or any
        object with ``.detect(rgb) -> list[Detection]``.
    batch_size : network inputs per forward pass (faces are batched across images/frames).
    ensemble : ``(p, s)`` to use the convolutional ensemble at inference, or None.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | dict[str, Any],
        device: str | torch.device = "auto",
        detector: str | Any = "yunet",
        batch_size: int = 64,
        ensemble: tuple[int, int] | str | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.ensemble = parse_ensemble(ensemble)
        self.device = resolve_device(device)
        state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        size = input_size_of(state, repr(str(checkpoint)) if not isinstance(checkpoint, dict) else "(dict)")
        model, state = model_from_checkpoint(state)
        self.state = state
        self.kind: str = state["kind"]
        self.input_size: tuple[int, int] = size
        self.spec = model.spec
        self.model = model.to(self.device).eval()
        self.key = self.spec.predict_key
        self.grid = self.spec.grids[self.key]
        if isinstance(detector, str):
            from pipeline.relabel.detect import get_detector  # noqa: PLC0415 - heavy backends load lazily

            self.detector = get_detector(detector)
        elif hasattr(detector, "detect"):
            self.detector = detector
        else:
            raise ValueError(f"detector must be a name or an object with .detect(rgb), got {detector!r}")
        log.info(
            "predictor: %s checkpoint, %s, input %dx%d, head %s, device %s, detector %s%s",
            self.kind, self.spec.backbone, *self.input_size, self.key, self.device,
            getattr(self.detector, "name", type(self.detector).__name__),
            f", ensemble p={self.ensemble[0]} s={self.ensemble[1]} A={self.ensemble_size}" if self.ensemble else "",
        )

    # ---- geometry ----------------------------------------------------------------------

    @property
    def pad(self) -> int:
        return self.ensemble[0] if self.ensemble else 0

    @property
    def ensemble_size(self) -> int:
        return ensemble_size(*self.ensemble) if self.ensemble else 1

    def detect(self, rgb: np.ndarray) -> list[Any]:
        """Detections of ``rgb`` ordered left to right (by box center x)."""
        dets = list(self.detector.detect(rgb))
        return sorted(dets, key=lambda d: (d.box[0] + d.box[2]) / 2)

    def crop(self, rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The network input for ``box`` (uint8 h×w×3), or the padded region Z with an ensemble."""
        return crop(rgb, box, self.input_size, pad=self.pad)

    # ---- network -----------------------------------------------------------------------

    @torch.inference_mode()
    def predict_probs(self, crops: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """Smallest-bin distributions [N, 3, Q] (CPU float32) for crops from :meth:`crop`."""
        if not len(crops):
            return torch.empty(0, 3, self.grid.count)
        return torch.cat([pr.float().cpu() for pr in self._probs_chunks(crops)])

    def _probs_chunks(self, crops: np.ndarray | Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        n = len(crops)
        for i in range(0, n, self.batch_size):
            part = crops[i:i + self.batch_size]
            arr = np.ascontiguousarray(np.stack(part) if not isinstance(part, np.ndarray) else part)
            x = torch.from_numpy(arr).to(self.device, non_blocking=True)
            if self.ensemble is None:
                yield torch.softmax(self.model(normalize(x))[self.key].float(), dim=-1)
            else:
                # DESIGN §5 on the device (the teacher job's implementation): Z normalised once,
                # the A crops cut as views, batch_size crops per forward pass; fp32 (amp=False)
                # so that p = 0 reproduces the single network exactly.
                p, s = self.ensemble
                yield ensemble_probs(self.model, x, self.input_size, p, s, head=self.key,
                                     chunk=self.batch_size, device=self.device, amp=False)

    @torch.inference_mode()
    def predict_crops(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(pitch, yaw, roll) degrees [N, 3] for crops from :meth:`crop`."""
        out = np.empty((len(crops), 3), dtype=np.float32)
        i = 0
        for probs in self._probs_chunks(crops):
            ang = self.grid.decode_probs(probs)
            out[i:i + len(ang)] = ang.cpu().numpy()
            i += len(ang)
        return out

    def predict_boxes(self, rgb: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """(pitch, yaw, roll) [N, 3] for given face boxes (x1, y1, x2, y2) in ``rgb``."""
        return self.predict_crops([self.crop(rgb, b) for b in boxes])

    def predict_image(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        """Rows (see :data:`ROW_FIELDS`) for every face in one RGB uint8 image."""
        item = InputItem("array", "<array>", array=_check_array(rgb, "predict_image"))
        return [r for entry in self._run([item], draw_dir=None, progress=False) for r in _rows(entry)]

    def predict_paths(
        self,
        inputs: Iterable[str | os.PathLike[str] | np.ndarray] | Sequence[InputItem],
        draw_dir: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows for every face of every input (images, directories, videos, arrays), in input
        order; unusable files/frames give one row with ``error`` set. ``draw_dir``: also write
        the images (mp4 for videos) with the pose axes drawn. ``progress=None``: a bar when
        stderr is a terminal."""
        inputs = list(inputs)
        items = inputs if inputs and all(isinstance(i, InputItem) for i in inputs) else collect_inputs(inputs)
        for entry in self._run(items, draw_dir=draw_dir, progress=progress):
            yield from _rows(entry)

    # ---- streaming engine --------------------------------------------------------------

    def _run(self, items: Sequence[InputItem], draw_dir: str | os.PathLike[str] | None,
             progress: bool | None) -> Iterator[_Entry]:
        from tqdm.auto import tqdm  # noqa: PLC0415

        drawer = _Drawer(Path(draw_dir)) if draw_dir is not None else None
        keep = drawer is not None
        max_pending = min(self.batch_size, 16) if keep else max(64, 2 * self.batch_size)
        pending: list[_Entry] = []
        n_crops = 0
        disable = None if progress is None else not progress
        bar = tqdm(items, desc="predict", unit="file", disable=disable if len(items) > 1 else True)
        try:
            for item in bar:
                for entry in self._entries(item, keep, disable):
                    pending.append(entry)
                    n_crops += len(entry.crops)
                    if n_crops >= self.batch_size or len(pending) >= max_pending:
                        yield from self._flush(pending, drawer)
                        pending, n_crops = [], 0
            yield from self._flush(pending, drawer)
        finally:
            bar.close()
            if drawer is not None:
                drawer.close()

    def _flush(self, pending: list[_Entry], drawer: _Drawer | None) -> Iterator[_Entry]:
        crops = [c for e in pending for c in e.crops]
        angles = self.predict_crops(crops) if crops else np.empty((0, 3), np.float32)
        i = 0
        for e in pending:
            e.angles = angles[i:i + len(e.crops)]
            i += len(e.crops)
            e.crops = []
            if drawer is not None:
                drawer.add(e)
            e.image = None
            yield e

    def _entries(self, item: InputItem, keep: bool, disable: bool | None) -> Iterator[_Entry]:
        if item.kind == "video":
            yield from self._video_entries(item, keep, disable)
            return
        try:
            rgb = item.array if item.kind == "array" else read_image(item.path)  # type: ignore[arg-type]
            rgb = _check_array(rgb, item.name)
        except (ValueError, FileNotFoundError) as exc:
            log.warning("%s", exc)
            yield _Entry(item, None, error=str(exc))
            return
        yield self._entry(item, None, rgb, keep)

    def _video_entries(self, item: InputItem, keep: bool, disable: bool | None) -> Iterator[_Entry]:
        from tqdm.auto import tqdm  # noqa: PLC0415

        cap = cv2.VideoCapture(str(item.path))
        if not cap.isOpened():
            msg = f"video {item.name!r} could not be opened (unreadable file or unsupported codec)"
            log.warning("%s", msg)
            yield _Entry(item, None, error=msg)
            return
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        fps = cap.get(cv2.CAP_PROP_FPS)
        bar = tqdm(total=total, desc=Path(item.name).name, unit="frame", leave=False, disable=disable)
        frame = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                entry = self._entry(item, frame, rgb, keep)
                entry.fps = fps
                yield entry
                frame += 1
                bar.update(1)
        finally:
            bar.close()
            cap.release()
        if frame == 0:
            msg = f"video {item.name!r} has no readable frames (corrupt file or unsupported codec)"
            log.warning("%s", msg)
            yield _Entry(item, None, error=msg)

    def _entry(self, item: InputItem, frame: int | None, rgb: np.ndarray, keep: bool) -> _Entry:
        entry = _Entry(item, frame, image=rgb if keep else None)
        try:
            dets = self.detect(rgb)
        except (ValueError, cv2.error) as exc:
            entry.error = f"face detection failed on {item.name!r}: {exc}"
            log.warning("%s", entry.error)
            return entry
        h, w = rgb.shape[:2]
        for d in dets:
            box = clip_box(d.box, w, h, MIN_BOX_SIZE)
            if box is None:
                log.debug("skipping detection %s outside %s", d.box, item.name)
                continue
            entry.boxes.append(box)
            entry.scores.append(float(d.score))
            entry.crops.append(self.crop(rgb, box))
        if not entry.boxes:
            entry.error = NO_FACE
        return entry


def _check_array(rgb: Any, name: str) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name}: expected an RGB uint8 [H, W, 3] image, got {arr.dtype} {arr.shape}")
    return arr


def _num(v: float, nd: int) -> float | None:
    v = float(v)
    return None if not math.isfinite(v) else round(v, nd)


def _rows(entry: _Entry) -> Iterator[dict[str, Any]]:
    base = {k: None for k in ROW_FIELDS}
    base["file"] = entry.item.name
    base["frame"] = entry.frame
    if entry.error is not None and not entry.boxes:
        yield {**base, "error": entry.error}
        return
    assert entry.angles is not None
    for k, (box, score, ang) in enumerate(zip(entry.boxes, entry.scores, entry.angles)):
        yield {
            **base, "face": k,
            "x1": _num(box[0], 2), "y1": _num(box[1], 2), "x2": _num(box[2], 2), "y2": _num(box[3], 2),
            "det_score": _num(score, 4),
            "pitch": _num(ang[0], 3), "yaw": _num(ang[1], 3), "roll": _num(ang[2], 3),
        }


# --------------------------------------------------------------------------- drawing


_WRITABLE = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class _Drawer:
    """Writes annotated images under ``root`` (same relative names) and one mp4 per video."""

    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise ValueError(f"--draw {str(root)!r} exists and is not a directory")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.used: set[Path] = set()
        self.video_item: InputItem | None = None
        self.writer: cv2.VideoWriter | None = None
        self.video_path: Path | None = None
        self.written: list[Path] = []

    def _target(self, name: str, suffix: str) -> Path:
        rel = Path(name)
        if rel.suffix.lower() not in _WRITABLE or suffix:
            rel = rel.with_suffix(suffix or ".png")
        out = self.root / rel
        stem, n = out.with_suffix(""), 1
        while out in self.used:
            out = Path(f"{stem}_{n}{out.suffix}")
            n += 1
        self.used.add(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def add(self, e: _Entry) -> None:
        from pipeline.inference.drawing import draw_face  # noqa: PLC0415

        if e.image is None:
            return
        img = np.ascontiguousarray(e.image).copy()
        assert e.angles is not None
        for box, ang in zip(e.boxes, e.angles):
            draw_face(img, box, *map(float, ang), thickness=max(1, int(round((box[3] - box[1]) / 60))))
        if e.item.kind != "video":
            self._close_video()
            out = self._target(e.item.draw_name or Path(e.item.name).name, "")
            write_image(out, img)
            self.written.append(out)
            return
        if self.video_item is not e.item:
            self._close_video()
            self.video_item = e.item
            self.video_path = self._target(e.item.draw_name or Path(e.item.name).name, ".mp4")
            fps = e.fps if e.fps and math.isfinite(e.fps) else 25.0
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not self.writer.isOpened():
                raise ValueError(f"could not open a video writer for {str(self.video_path)!r} (mp4v codec)")
            self.written.append(self.video_path)
        assert self.writer is not None
        self.writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def _close_video(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.writer, self.video_item = None, None

    def close(self) -> None:
        self._close_video()


# --------------------------------------------------------------------------- output


def output_format(out: str | os.PathLike[str] | None, fmt: str | None = None) -> str:
    """``fmt`` if given, else from ``out``'s extension (.jsonl/.ndjson/.json → jsonl, .csv → csv);
    stdout (``out`` None or ``-``) defaults to jsonl."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r} must be one of {FORMATS}")
        return fmt
    if out is None or str(out) == "-":
        return "jsonl"
    ext = Path(out).suffix.lower()
    if ext == ".csv":
        return "csv"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ValueError(f"cannot tell the output format from {str(out)!r}: use a .jsonl or .csv name, or --format")


@dataclass
class WriteSummary:
    files: int = 0
    faces: int = 0
    errors: int = 0
    failed_files: int = 0  # files (images/videos) with no face predicted at all
    rows: int = 0


def write_rows(
    rows: Iterable[dict[str, Any]], out: str | os.PathLike[str] | TextIO | None, fmt: str | None = None
) -> WriteSummary:
    """Write rows as JSON Lines or CSV to a path (atomically), a text stream, or stdout."""
    if out is None or (not hasattr(out, "write") and str(out) == "-"):
        return _write_stream(rows, sys.stdout, output_format(None, fmt))
    if hasattr(out, "write"):
        return _write_stream(rows, out, fmt or "jsonl")  # type: ignore[arg-type]
    kind = output_format(out, fmt)  # type: ignore[arg-type]
    with atomic_path(out, Path(out).suffix) as tmp:  # type: ignore[arg-type]
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            summary = _write_stream(rows, f, kind)
    return summary


def _write_stream(rows: Iterable[dict[str, Any]], f: TextIO, kind: str) -> WriteSummary:
    s = WriteSummary()
    ok_files: dict[str, bool] = {}
    writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore") if kind == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        s.rows += 1
        ok_files.setdefault(row["file"], False)
        if row.get("error"):
            s.errors += 1
        else:
            s.faces += 1
            ok_files[row["file"]] = True
        if writer is not None:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in ROW_FIELDS})
        else:
            f.write(json.dumps(row, allow_nan=False) + "\n")
    s.files = len(ok_files)
    s.failed_files = sum(not v for v in ok_files.values())
    return s


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read back a predictions file (JSON Lines or CSV; CSV values parsed to numbers/None)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if output_format(p) == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        parsed: dict[str, Any] = {}
        for k in ROW_FIELDS:
            v = row.get(k, "")
            if v == "":
                parsed[k] = None
            elif k in ("frame", "face"):
                parsed[k] = int(v)
            elif k in ("file", "error"):
                parsed[k] = v
            else:
                parsed[k] = float(v)
        out.append(parsed)
    return out


def predict_images(
    checkpoint: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | np.ndarray],
    *,
    device: str = "auto",
    detector: str | Any = "yunet",
    batch_size: int = 64,
    ensemble: tuple[int, int] | str | None = None,
    draw_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = False,
) -> list[dict[str, Any]]:
    """One call: rows (dicts with :data:`ROW_FIELDS`) for every face in ``inputs`` (image
    paths, directories, videos or RGB uint8 arrays)."""
    pred = Predictor(checkpoint, device=device, detector=detector, batch_size=batch_size, ensemble=ensemble)
    return list(pred.predict_paths(inputs, draw_dir=draw_dir, progress=progress))
