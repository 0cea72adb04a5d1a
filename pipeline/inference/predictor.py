"""Inference for users: faces in images, folders and videos → (pitch, yaw, roll).

:class:`Predictor` loads any stage-1 or stage-2 checkpoint, finds faces with the relabeling
detector (:func:`pipeline.relabel.detect.get_detector`), crops each face exactly the way training
does (:func:`pipeline.core.geometry.crop` of the detector box to the checkpoint's input size,
ImageNet normalisation on the device), and predicts with the smallest-bin RvC head. Faces are
batched across images and video frames. With ``ensemble=(p, s)`` every face is evaluated by
the convolutional ensemble of docs/design.md §5 (A = (2p/s + 1)² shifted crops cut on the device from
one padded region Z, softmax averaged, then decoded).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from pipeline.core.device import resolve_device
from pipeline.core.geometry import MIN_BOX_SIZE, clip_box, crop
from pipeline.core.images import normalize, read_image
from pipeline.inference.drawing import DrawingWriter
from pipeline.inference.inputs import InputItem, check_rgb, collect_inputs
from pipeline.inference.rows import NO_FACE, FrameEntry, entry_rows
from pipeline.model.checkpoint import input_size_of, load_checkpoint, model_from_checkpoint
from pipeline.teacher.ensemble import ensemble_probs, ensemble_size, validate_ensemble

log = logging.getLogger(__name__)


def parse_ensemble(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"15,5"`` or ``(15, 5)`` → (p, s), validated (p a multiple of s, docs/design.md §5); None → None."""
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
                # docs/design.md §5 on the device (the teacher job's implementation): Z normalised once,
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
        item = InputItem("array", "<array>", array=check_rgb(rgb, "predict_image"))
        return [r for entry in self._run([item], draw_dir=None, progress=False) for r in entry_rows(entry)]

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
            yield from entry_rows(entry)

    # ---- streaming engine --------------------------------------------------------------

    def _run(self, items: Sequence[InputItem], draw_dir: str | os.PathLike[str] | None,
             progress: bool | None) -> Iterator[FrameEntry]:
        from tqdm.auto import tqdm  # noqa: PLC0415

        drawer = DrawingWriter(Path(draw_dir)) if draw_dir is not None else None
        keep = drawer is not None
        max_pending = min(self.batch_size, 16) if keep else max(64, 2 * self.batch_size)
        pending: list[FrameEntry] = []
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

    def _flush(self, pending: list[FrameEntry], drawer: DrawingWriter | None) -> Iterator[FrameEntry]:
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

    def _entries(self, item: InputItem, keep: bool, disable: bool | None) -> Iterator[FrameEntry]:
        if item.kind == "video":
            yield from self._video_entries(item, keep, disable)
            return
        try:
            rgb = item.array if item.kind == "array" else read_image(item.path)  # type: ignore[arg-type]
            rgb = check_rgb(rgb, item.name)
        except (ValueError, FileNotFoundError) as exc:
            log.warning("%s", exc)
            yield FrameEntry(item, None, error=str(exc))
            return
        yield self._entry(item, None, rgb, keep)

    def _video_entries(self, item: InputItem, keep: bool, disable: bool | None) -> Iterator[FrameEntry]:
        from tqdm.auto import tqdm  # noqa: PLC0415

        cap = cv2.VideoCapture(str(item.path))
        if not cap.isOpened():
            msg = f"video {item.name!r} could not be opened (unreadable file or unsupported codec)"
            log.warning("%s", msg)
            yield FrameEntry(item, None, error=msg)
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
            yield FrameEntry(item, None, error=msg)

    def _entry(self, item: InputItem, frame: int | None, rgb: np.ndarray, keep: bool) -> FrameEntry:
        entry = FrameEntry(item, frame, image=rgb if keep else None)
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
