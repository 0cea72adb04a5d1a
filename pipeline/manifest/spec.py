"""Configuration and row helpers shared by the dataset readers.

A reader is a function ``read(spec: DatasetSpec, ctx: ReadContext) -> list[dict]`` returning
one row per face with the manifest columns (see :data:`pipeline.manifest.index.COLUMNS`).
Per-file problems (an unreadable ``.mat``, a ``.mat`` without ``Pose_Para``, an unreadable
pose file) go through :meth:`ReadContext.problem`: with ``on_error: raise`` (default) they stop
the index with a one-line error naming the file and what was expected; with
``on_error: reject`` the row is kept with ``status = "rejected"`` and a short reason.
Data properties (an angle outside [−99, 99], a face without a pose) are always rejected rows,
never errors.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.config import config_from_mapping

log = logging.getLogger(__name__)

FORMATS = ("300w_lp", "aflw2000", "biwi", "biwi_npz", "aflw", "table", "images")
CONVENTIONS = ("hpekd", "kd_oe_hpe")
SPLITS = ("train", "test", "auto", "from_file")
ON_ERROR = ("raise", "reject")
W300LP_SUBSETS = ("AFW", "AFW_Flip", "HELEN", "HELEN_Flip", "IBUG", "IBUG_Flip", "LFPW", "LFPW_Flip")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
# protocol 3 (paper §4.4): the BIWI sequences of the published BIWI.json's "test" entries
# (5,065 faces; the other 16 sequences are the 10,612 train faces)
PAPER_BIWI_TEST_GROUPS = ("06", "07", "10", "13", "15", "18", "21", "22")

# format-specific keys of DatasetSpec (None = not set); any other format must leave them unset
_FORMAT_KEYS = {
    "subsets": ("300w_lp",),
    "test_first": ("aflw",),
    "test_groups": ("biwi",),
    "sqlite": ("aflw",),
    "image_dir": ("aflw",),
    "channels": ("biwi_npz",),
    "table": ("table",),
    "convention": ("table",),
}


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of ``index.datasets`` in params.yaml.

    ``split``: ``train`` | ``test`` | ``auto`` | ``from_file``. ``auto`` is the protocol for the
    format: 300W-LP → train; AFLW2000 → test; BIWI → by sequence (protocol 3: the
    ``test_groups``, default the paper's 06, 07, 10, 13, 15, 18, 21, 22, are test, the others
    train); BIWI npz → test; AFLW → the first ``test_first`` images test, the rest train (not
    the paper's split: use ``from_file`` with its AFLW.json); ``table`` → the table's ``split``
    column when it has one, else train; ``images`` → train (unlabelled rows are training rows
    only). ``from_file``: each row's split is
    the ``type`` of its entry in ``split_file`` (a published box JSON, matched like
    ``relabel.box_files``, :mod:`pipeline.manifest.boxfile`); rows of images absent from the file
    are kept as rejected ("not in split file …").
    """

    name: str
    format: str
    root: str
    split: str = "auto"
    subsets: tuple[str, ...] | None = None       # 300w_lp: subset folders (default the 8 of 300W-LP)
    test_first: int | None = None                # aflw: first N images are test (default 2000)
    test_groups: tuple[str | int, ...] | None = None  # biwi: sequences ("01".."24" or 1..24) that are test
    sqlite: str | None = None                    # aflw: database, relative to root (default aflw.sqlite)
    image_dir: str | None = None                 # aflw: folder under root of FaceImages.filepath (default flickr)
    channels: str | None = None                  # biwi_npz: channel order of `image` (default bgr, FSA-Net used cv2)
    split_file: str | None = None                # split: from_file — the published JSON whose entries' "type" is the split
    table: str | None = None                     # table: the CSV or parquet file (columns: pipeline.manifest.table)
    convention: str | None = None                # table: hpekd (default) | kd_oe_hpe (pitch negated in the file)

    def __post_init__(self) -> None:
        where = f"index dataset {self.name!r}"
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/#\\"):
            raise ValueError(f"index dataset name {self.name!r} must be a non-empty string without '/', '#', '\\'")
        if self.format not in FORMATS:
            raise ValueError(f"{where}: unknown dataset format {self.format!r}; known formats: {list(FORMATS)}")
        if self.split not in SPLITS:
            raise ValueError(f"{where}: split {self.split!r} must be one of {list(SPLITS)}")
        if not isinstance(self.root, str) or not self.root:
            raise ValueError(f"{where}: root must be a path")
        if self.split == "from_file" and (not isinstance(self.split_file, str) or not self.split_file):
            raise ValueError(f"{where}: split: from_file needs split_file: <path to the published JSON, e.g. BIWI.json>")
        if self.split != "from_file" and self.split_file is not None:
            raise ValueError(f"{where}: split_file is only used with split: from_file (got split: {self.split})")
        for key, formats in _FORMAT_KEYS.items():
            if getattr(self, key) is not None and self.format not in formats:
                raise ValueError(f"{where}: key {key!r} is not used by format {self.format!r} (only {list(formats)})")
        for key in ("subsets", "test_groups"):
            v = getattr(self, key)
            if v is not None:
                if isinstance(v, str) or not all(isinstance(s, (str, int)) for s in v):
                    raise ValueError(f"{where}: {key} must be a list of names, got {v!r}")
                object.__setattr__(self, key, tuple(_group_name(s) if key == "test_groups" else str(s) for s in v))
        if self.test_first is not None and (not isinstance(self.test_first, int) or self.test_first < 0):
            raise ValueError(f"{where}: test_first must be an integer >= 0, got {self.test_first!r}")
        if self.format == "table" and (not isinstance(self.table, str) or not self.table):
            raise ValueError(f"{where}: format table needs table: <path to a .csv or .parquet file>")
        if self.convention is not None and self.convention not in CONVENTIONS:
            raise ValueError(f"{where}: convention must be one of {list(CONVENTIONS)}, got {self.convention!r}")
        if self.format == "images" and self.split not in ("auto", "train"):
            raise ValueError(f"{where}: format images holds unlabelled images, which are training rows only "
                             f"(split: train or auto), got split: {self.split}")
        if self.channels is not None and self.channels not in ("bgr", "rgb"):
            raise ValueError(f"{where}: channels must be 'bgr' or 'rgb', got {self.channels!r}")

    # resolved format-specific settings
    @property
    def subset_list(self) -> tuple[str, ...]:
        return self.subsets if self.subsets is not None else W300LP_SUBSETS

    @property
    def test_first_n(self) -> int:
        return 2000 if self.test_first is None else self.test_first

    @property
    def test_group_set(self) -> tuple[str, ...]:
        """BIWI ``split: auto`` test sequences: ``test_groups``, default the paper's eight."""
        return self.test_groups if self.test_groups is not None else PAPER_BIWI_TEST_GROUPS

    @property
    def sqlite_name(self) -> str:
        return self.sqlite or "aflw.sqlite"

    @property
    def image_dir_name(self) -> str:
        return "flickr" if self.image_dir is None else self.image_dir

    @property
    def channel_order(self) -> str:
        return self.channels or "bgr"

    def input_paths(self) -> list[tuple[str, str]]:
        """``(params key, path)`` of every file or folder this dataset reads (its root, split
        file, table): what must exist, and lie under the pipeline's ``data_root``."""
        key = f"index.datasets[{self.name}]"
        out = [(f"{key}.root", self.root)]
        out += [(f"{key}.{k}", v) for k, v in (("split_file", self.split_file), ("table", self.table)) if v]
        return out


def _group_name(s: str | int) -> str:
    """BIWI sequence names are two digits: 1 → "01"."""
    return f"{s:02d}" if isinstance(s, int) else str(s)


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    """params.yaml section ``index``."""

    datasets: tuple[Any, ...]
    check_images: bool      # decode every image (fast reduced decode); else: exists and non-empty
    on_error: str        # raise | reject: a broken annotation/image file stops the index or is a rejected row
    workers: int               # threads for the image check / npz extraction

    def __post_init__(self) -> None:
        specs = []
        for i, d in enumerate(self.datasets):
            if isinstance(d, DatasetSpec):
                specs.append(d)
            elif isinstance(d, Mapping):
                specs.append(config_from_mapping(DatasetSpec, d, f"index.datasets[{i}]"))
            else:
                raise ValueError(f"index.datasets[{i}] must be a mapping {{name, format, root, split, ...}}, got {d!r}")
        if not specs:
            raise ValueError("index.datasets is empty: list at least one dataset {name, format, root, split}")
        names = Counter(s.name for s in specs)
        dups = sorted(n for n, c in names.items() if c > 1)
        if dups:
            raise ValueError(f"index.datasets: duplicate dataset name(s) {dups}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"index.on_error {self.on_error!r} must be one of {list(ON_ERROR)}")
        if not isinstance(self.check_images, bool):
            raise ValueError(f"index.check_images must be true or false, got {self.check_images!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"index.workers must be an integer >= 1, got {self.workers!r}")
        object.__setattr__(self, "datasets", tuple(specs))

    def input_paths(self) -> list[tuple[str, str]]:
        """``(params key, path)`` of every input of every dataset (:meth:`DatasetSpec.input_paths`)."""
        return [kp for spec in self.datasets for kp in spec.input_paths()]


@dataclass
class ReadContext:
    """What a reader needs besides its spec: the error policy and where to extract images."""

    on_error: str = "raise"
    extract_root: Path | None = None   # biwi_npz: images are extracted to <extract_root>/<name>/
    workers: int = 2
    progress: bool = False
    logged: Counter = field(default_factory=Counter)

    def problem(self, row: dict, reason: str, detail: str) -> dict:
        """A broken file: raise ``ValueError(detail)`` or return ``row`` rejected with ``reason``."""
        if self.on_error == "raise":
            raise ValueError(f"{detail} (set index.on_error: reject to record such files as rejected rows)")
        key = (row.get("dataset"), reason)
        self.logged[key] += 1
        if self.logged[key] <= 5:
            log.warning("rejected: %s", detail)
        return reject(row, reason)


def reject(row: dict, reason: str) -> dict:
    row["status"] = "rejected"
    row["reason"] = reason
    return row


# 10 parameters, kept flat: after the four that every row needs, each keyword-only option fills
# one group of the row's columns and each reader passes the few it has by name; a record for them
# would only mirror the row dict built below.
def make_row(
    spec: DatasetSpec, root: str, image_path: str, split: str, *, face: int | str = 0,
    angles: Sequence[float] | None = None, lm_box: Sequence[float] | None = None, group: str = "",
    labelled: bool = True, face_box: Sequence[float] | None = None,
) -> dict:
    """One manifest row; ``sample_id = <dataset>/<image_path>#<face>``. ``labelled=False``: an
    image without ground truth (angles NaN); a labelled row without ``angles`` is later rejected
    ("non-finite angle")."""
    image_path = str(image_path).replace("\\", "/")
    p, y, r = (math.nan, math.nan, math.nan) if angles is None else (float(a) for a in angles)
    box = (math.nan,) * 4 if lm_box is None else tuple(float(v) for v in lm_box)
    fb = (math.nan,) * 4 if face_box is None else tuple(float(v) for v in face_box)
    return {
        "sample_id": f"{spec.name}/{image_path}#{face}", "dataset": spec.name, "split": split, "root": root,
        "image_path": image_path, "pitch": p, "yaw": y, "roll": r,
        "lm_x1": box[0], "lm_y1": box[1], "lm_x2": box[2], "lm_y2": box[3],
        "face_x1": fb[0], "face_y1": fb[1], "face_x2": fb[2], "face_y2": fb[3],
        "group": group, "labelled": bool(labelled), "status": "ok", "reason": "",
    }


def require_dir(path: Path, spec: DatasetSpec, expected: str) -> None:
    if not path.is_dir():
        raise ValueError(f"dataset {spec.name!r}: folder {str(path)!r} not found (expected {expected})")


def fixed_split(spec: DatasetSpec, auto: str) -> str:
    """The split of every row of a single-split format (``from_file`` rows get theirs later)."""
    return auto if spec.split == "auto" else spec.split
