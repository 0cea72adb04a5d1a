"""Your own faces: the ``table`` format (a CSV or parquet file) and the ``images`` format (a
folder of unlabelled images).

``table``: ``root`` is the image folder, ``table`` the file (``.csv``, ``.parquet`` or ``.pq``),
one row per face. Columns:

- ``image`` (required): the image path relative to ``root``;
- ``pitch``, ``yaw``, ``roll`` (required columns): degrees in this project's convention
  (docs/design.md §3; ``convention: kd_oe_hpe`` reads pitch-negated files such as the paper's). All three
  cells empty → an **unlabelled** row (``labelled = false``, angles NaN): a training row the
  teacher labels and the student learns by distillation alone;
- ``x1, y1, x2, y2`` (optional, all four or none per row): a face box in pixels, used by
  ``relabel.source: table`` and, with ``source: detector``, to pick which detection is the face;
- ``split`` (optional): ``train`` | ``test`` per row (empty = train), used with ``split: auto``
  (``split: train`` or ``test`` in params puts every row there instead);
- ``face`` (optional): the face number within the image (integer >= 0, default 0);
- ``group`` (optional): e.g. a video or subject id; frames of one group are tracked by relabel.

Rows count from 1, the header not included (in a CSV, row N is line N + 1). Every bad row — a
missing image, a non-numeric or partly empty angle, an inverted or partial box, an unknown
split, an unlabelled test row, a duplicate image + face — is, with ``index.on_error: reject``,
a rejected row with its reason; with ``on_error: raise`` (default) the index stops with one line
naming the file, the row number and the column. A missing file or required column is always
an error. Other columns are ignored (logged once).

``images``: every image under ``root`` (searched recursively, suffixes
:data:`pipeline.core.images.IMAGE_EXTS`), one unlabelled training row each (face 0), in sorted
path order.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path, PurePosixPath

import pandas as pd

from pipeline.core.images import IMAGE_EXTS
from pipeline.manifest.spec import DatasetSpec, ReadContext, fixed_split, make_row, require_dir

log = logging.getLogger(__name__)

REQUIRED = ("image", "pitch", "yaw", "roll")
BOX = ("x1", "y1", "x2", "y2")
OPTIONAL = (*BOX, "split", "face", "group")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
ROW_SPLITS = ("train", "test")


class _BadRow(Exception):
    """One bad cell: ``reason`` goes into the rejected row, ``column`` into the error line."""

    def __init__(self, column: str, reason: str):
        super().__init__(reason)
        self.column, self.reason = column, reason


def load_table(path: str | Path) -> pd.DataFrame:
    """The file as strings (empty cell = ``""``), every problem a ``ValueError`` naming it."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"table {str(p)!r} not found (index.datasets: table: must name a .csv or .parquet file)")
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"table {str(p)!r}: unsupported file type {suffix!r}; expected one of {list(TABLE_SUFFIXES)}")
    try:
        if suffix == ".csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
        else:
            raw = pd.read_parquet(p)
            df = raw.astype(object).where(raw.notna(), "").map(lambda v: "" if v is None else str(v))
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types
        raise ValueError(f"table {str(p)!r} could not be read ({type(exc).__name__}: {exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"table {str(p)!r} lacks column(s) {missing}; expected columns {list(REQUIRED)} and "
                         f"optionally {list(OPTIONAL)} (angle cells empty for an unlabelled image)")
    present = [c for c in BOX if c in df.columns]
    if present and len(present) != len(BOX):
        raise ValueError(f"table {str(p)!r} has box column(s) {present} but not all of {list(BOX)}")
    extra = [c for c in df.columns if c not in REQUIRED + OPTIONAL]
    if extra:
        log.info("table %s: column(s) %s ignored", p, extra)
    if not len(df):
        raise ValueError(f"table {str(p)!r} has no rows")
    return df.apply(lambda col: col.str.strip())


def _number(text: str, column: str) -> float | None:
    """A cell as a finite float, ``None`` when empty."""
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise _BadRow(column, f"non-numeric {column} {text!r}") from None
    if not math.isfinite(v):
        raise _BadRow(column, f"non-finite {column} {text!r}")
    return v


def _angles(cells: dict[str, str], negate_pitch: bool) -> tuple[float, float, float] | None:
    got = {a: _number(cells[a], a) for a in ("pitch", "yaw", "roll")}
    empty = [a for a, v in got.items() if v is None]
    if len(empty) == 3:
        return None
    if empty:
        raise _BadRow(empty[0], f"angle(s) {empty} empty: give all three, or none for an unlabelled image")
    p, y, r = (float(got[a]) for a in ("pitch", "yaw", "roll"))  # type: ignore[arg-type]
    return (-p if negate_pitch else p, y, r)


def _box(cells: dict[str, str]) -> tuple[float, float, float, float] | None:
    if "x1" not in cells:
        return None
    got = [_number(cells[c], c) for c in BOX]
    if all(v is None for v in got):
        return None
    if any(v is None for v in got):
        raise _BadRow(BOX[got.index(None)], f"box partly empty: give all of {list(BOX)} or none")
    x1, y1, x2, y2 = (float(v) for v in got)  # type: ignore[arg-type]
    if x2 <= x1 or y2 <= y1:
        raise _BadRow("x2" if x2 <= x1 else "y2", f"inverted box ({x1:g}, {y1:g}, {x2:g}, {y2:g}): need x2 > x1 and y2 > y1")
    return (x1, y1, x2, y2)


def _image(text: str, root: Path) -> str:
    if text == "":
        raise _BadRow("image", "empty image path")
    rel = text.replace("\\", "/")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or (len(rel) > 1 and rel[1] == ":"):
        raise _BadRow("image", f"image path {text!r} must be relative to root, inside it")
    if not (root / rel).is_file():
        raise _BadRow("image", f"image not found: {str(root / rel)!r}")
    return rel


def _face(text: str) -> int:
    if text == "":
        return 0
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if v < 0 or v != int(v):
        raise _BadRow("face", f"face {text!r} must be an integer >= 0")
    return int(v)


def _split(cells: dict[str, str], spec: DatasetSpec) -> str:
    if spec.split != "auto" or "split" not in cells:
        return fixed_split(spec, "train")
    value = cells["split"] or "train"
    if value not in ROW_SPLITS:
        raise _BadRow("split", f"unknown split {cells['split']!r} (expected {' or '.join(ROW_SPLITS)})")
    return value


def read_table(spec: DatasetSpec, ctx: ReadContext) -> list[dict]:
    """Rows of ``spec.table`` (see the module docstring), in file order."""
    root = Path(spec.root)
    require_dir(root, spec, f"the image folder that the paths of {spec.table} are relative to")
    where = f"table {str(spec.table)!r}"
    df = load_table(str(spec.table))
    negate = spec.convention == "kd_oe_hpe"
    rows: list[dict] = []
    seen: dict[tuple[str, int], int] = {}
    for n, cells in enumerate(df.to_dict("records"), start=1):
        raw_image = str(cells["image"]).replace("\\", "/")
        face: int | str = 0
        split = "train"
        try:
            face = _face(cells.get("face", ""))
            split = _split(cells, spec)
            image = _image(str(cells["image"]), root)
            angles = _angles(cells, negate)
            box = _box(cells)
            if angles is None and split != "train":
                raise _BadRow("split", "unlabelled row in the test split (test rows need angles)")
            first = seen.setdefault((image, int(face)), n)
            if first != n:
                raise _BadRow("image", f"duplicate image + face {image!r} #{face} (first at row {first})")
        except _BadRow as bad:
            # a unique id for the rejected row, even when it repeats another row's image + face
            row = make_row(spec, spec.root, raw_image, split if split in ROW_SPLITS else "train",
                           face=f"{face}?row{n}", group=str(cells.get("group", "")))
            rows.append(ctx.problem(row, bad.reason, f"{where}: row {n}, column {bad.column!r}: {bad.reason}"))
            continue
        rows.append(make_row(spec, spec.root, image, split, face=face, angles=angles, group=str(cells.get("group", "")),
                             labelled=angles is not None, face_box=box))
    return rows


def read_images(spec: DatasetSpec, ctx: ReadContext) -> list[dict]:
    """One unlabelled training row per image under ``spec.root`` (recursive, sorted)."""
    root = Path(spec.root)
    require_dir(root, spec, "a folder of face images (searched recursively)")
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not found:
        raise ValueError(f"dataset {spec.name!r}: no images under {str(root)!r} "
                         f"(looked recursively for {', '.join(sorted(IMAGE_EXTS))})")
    return [make_row(spec, spec.root, rel, "train", labelled=False) for rel in found]


__all__ = ["load_table", "read_images", "read_table"]
