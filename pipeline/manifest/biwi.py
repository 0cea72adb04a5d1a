"""BIWI Kinect head pose: the raw frames and the FSA-Net ``.npz`` variant.

Raw layout (``format: biwi``): ``root/hpdb/NN/frame_XXXXX_rgb.png`` + ``frame_XXXXX_pose.txt``
(``root`` may also be the ``hpdb`` folder itself). The pose file holds the 3×3 rotation (three
rows) then the head translation (one row); angles follow HopeNet's conversion
(:func:`pipeline.core.angles.biwi_angles`). ``group`` = the sequence ``NN``; protocol 3 splits by it
(``split: auto``: ``test_groups``, default the paper's 06, 07, 10, 13, 15, 18, 21, 22; or
``split: from_file`` with the published BIWI.json). Protocol 1 tests on all of BIWI: ``split:
test``. BIWI has no landmarks: boxes come from relabeling.

FSA-Net variant (``format: biwi_npz``, ``root`` = the ``.npz`` file): arrays ``image``
[N, H, W, 3] uint8 (face crops; FSA-Net wrote them with OpenCV, so BGR by default, see
``channels``) and ``pose`` [N, 3] = yaw, pitch, roll in degrees. The images are extracted to
``<extract_root>/<name>/<i:06d>.png`` (deterministic bytes; an existing identical file is not
rewritten), which becomes the manifest ``root`` of those rows.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.angles import biwi_angles
from pipeline.core.io import Product, check_folder_output
from pipeline.manifest.spec import DatasetSpec, ReadContext, fixed_split, make_row, require_dir

log = logging.getLogger(__name__)

POSE_TXT_EXPECTED = "a 3x3 rotation (3 rows of 3 numbers) then a translation row"
NPZ_EXPECTED = "an FSA-Net .npz with 'image' [N,H,W,3] uint8 and 'pose' [N,3] (yaw, pitch, roll degrees)"
_FRAME = re.compile(r"^frame_(\d+)_rgb\.png$")
_EXTRACTED = re.compile(r"^\d{6}\.png$")
_EXTRACTED_OR_TMP = re.compile(r"^(\d{6}\.png|\.\d{6}\.png\.\d+\.tmp)$")  # + a killed write's temporary
# what `hpekd index` may write into and prune: a folder of only its numbered PNGs
EXTRACTED = Product("a folder of images extracted by hpekd index (only NNNNNN.png)",
                    lambda d: all(_EXTRACTED_OR_TMP.match(p.name) for p in d.iterdir()))


class PoseFileProblem(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_pose_txt(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``frame_XXXXX_pose.txt`` → (R_file [3, 3], translation [3] or None)."""
    if not path.is_file():
        raise PoseFileProblem("no pose .txt", f"pose file {str(path)!r} not found (expected {POSE_TXT_EXPECTED} next to the image)")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise PoseFileProblem("unreadable pose .txt", f"pose file {str(path)!r} could not be parsed ({exc}); expected {POSE_TXT_EXPECTED}") from exc
    if values.size not in (9, 12):
        raise PoseFileProblem("unreadable pose .txt", f"pose file {str(path)!r} has {values.size} numbers; expected {POSE_TXT_EXPECTED}")
    return values[:9].reshape(3, 3), (values[9:12] if values.size == 12 else None)


def _sequence_root(spec: DatasetSpec) -> Path:
    root = Path(spec.root)
    require_dir(root, spec, "the BIWI folder holding hpdb/NN/frame_XXXXX_rgb.png + frame_XXXXX_pose.txt")
    return root / "hpdb" if (root / "hpdb").is_dir() else root


def read_biwi(spec: DatasetSpec, ctx: ReadContext) -> list[dict]:
    root = Path(spec.root)
    seq_root = _sequence_root(spec)
    sequences = sorted(p for p in seq_root.iterdir() if p.is_dir() and p.name.isdigit())
    if not sequences:
        raise ValueError(f"dataset {spec.name!r}: no sequence folders NN in {str(seq_root)!r} "
                         "(expected hpdb/NN/frame_XXXXX_rgb.png + frame_XXXXX_pose.txt)")
    groups = [p.name for p in sequences]
    if spec.test_groups is not None and spec.split != "auto":
        raise ValueError(f"dataset {spec.name!r}: test_groups needs split: auto (got split: {spec.split})")
    test_groups = set(spec.test_group_set)
    unknown = sorted(test_groups - set(groups))
    if unknown and spec.test_groups is not None:
        raise ValueError(f"dataset {spec.name!r}: test_groups {unknown} not found in {str(seq_root)!r} (sequences there: {groups})")
    if spec.split == "auto":
        if unknown:
            log.warning("%s: the paper's test sequences %s are not in %s", spec.name, unknown, seq_root)
        log.info("%s: split by sequence, test = %s", spec.name, sorted(test_groups & set(groups)))
    rows: list[dict] = []
    for seq in sequences:
        split = ("test" if seq.name in test_groups else "train") if spec.split == "auto" else spec.split
        frames = sorted(p for p in seq.iterdir() if _FRAME.match(p.name))
        for image in frames:
            rel = image.relative_to(root).as_posix()
            row = make_row(spec, spec.root, rel, split, group=seq.name)
            try:
                r_file, _ = read_pose_txt(image.with_name(image.name[: -len("_rgb.png")] + "_pose.txt"))
            except PoseFileProblem as p:
                rows.append(ctx.problem(row, p.reason, p.detail))
                continue
            rows.append(make_row(spec, spec.root, rel, split, angles=biwi_angles(r_file), group=seq.name))
    if not rows:
        raise ValueError(f"dataset {spec.name!r}: no frame_XXXXX_rgb.png files under {str(seq_root)!r}")
    return rows


def _load_npz(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    path = Path(spec.root)
    if not path.is_file():
        raise ValueError(f"dataset {spec.name!r}: file {str(path)!r} not found (expected {NPZ_EXPECTED})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("image", "pose") if k not in data.files]
            if missing:
                raise ValueError(f"dataset {spec.name!r}: {str(path)!r} lacks array(s) {missing} "
                                 f"(has {sorted(data.files)}); expected {NPZ_EXPECTED}")
            images, poses = data["image"], data["pose"]
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/pickle errors
        raise ValueError(f"dataset {spec.name!r}: {str(path)!r} could not be read as .npz ({exc}); expected {NPZ_EXPECTED}") from exc
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"dataset {spec.name!r}: {str(path)!r}: 'image' is {images.dtype}{list(images.shape)}; expected {NPZ_EXPECTED}")
    if poses.ndim != 2 or poses.shape != (len(images), 3):
        raise ValueError(f"dataset {spec.name!r}: {str(path)!r}: 'pose' has shape {list(poses.shape)} for {len(images)} images; expected {NPZ_EXPECTED}")
    return images, poses.astype(np.float64)


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def extract_npz_images(images: np.ndarray, out_dir: Path, channels: str = "bgr", workers: int = 2) -> int:
    """Write ``images[i]`` to ``out_dir/<i:06d>.png``; returns the number of files (re)written.

    PNG bytes are a function of the pixels only, so a rerun rewrites nothing. Numbered PNGs
    beyond ``len(images)`` (left from a bigger earlier npz) are removed. A folder holding
    anything else is refused (docs/outputs.md).
    """
    check_folder_output(out_dir, EXTRACTED, "extracted images folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> bool:
        img = images[i] if channels == "bgr" else cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
        if not ok:
            raise ValueError(f"could not encode image {i} for {str(out_dir)!r}")
        return _write_if_changed(out_dir / f"{i:06d}.png", buf.tobytes())

    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        written = sum(pool.map(one, range(len(images))))
    for p in out_dir.iterdir():
        if _EXTRACTED.match(p.name) and int(p.stem) >= len(images):
            p.unlink()
    return written


def read_biwi_npz(spec: DatasetSpec, ctx: ReadContext) -> list[dict]:
    images, poses = _load_npz(spec)
    if ctx.extract_root is None:
        raise ValueError(f"dataset {spec.name!r}: format biwi_npz needs a folder to extract its images to")
    out_dir = Path(ctx.extract_root) / spec.name
    written = extract_npz_images(images, out_dir, spec.channel_order, ctx.workers)
    log.info("%s: %d images in %s (%d written)", spec.name, len(images), out_dir, written)
    split = fixed_split(spec, "test")
    root = out_dir.as_posix()
    return [
        make_row(spec, root, f"{i:06d}.png", split, angles=(pitch, yaw, roll))
        for i, (yaw, pitch, roll) in enumerate(poses.tolist())
    ]
