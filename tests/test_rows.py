"""The boxes table's row rule (pipeline.manifest.rows) on a crafted table: split, status,
labelled, datasets, θ; image paths; boxes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.manifest.rows import (
    RowQuery,
    has_rows,
    image_file,
    image_paths,
    row_angles,
    row_boxes,
    row_ids,
    select,
    split_rows,
)

NAN = float("nan")
# (dataset, split, status, labelled, yaw); pitch = roll = 0 for labelled rows
ROWS = [
    ("a", "train", "ok", True, 10.0),  # 0
    ("a", "train", "rejected", True, 10.0),  # 1: rejected
    ("b", "train", "ok", True, 120.0),  # 2: out of ±99°
    ("b", "train", "ok", False, NAN),  # 3: unlabelled
    ("a", "test", "ok", True, -99.0),  # 4: on the edge, kept
    ("b", "train", "ok", True, 50.0),  # 5
    ("a", "test", "rejected", True, 0.0),  # 6: rejected
    ("a", "train", "ok", True, NAN),  # 7: labelled with a NaN angle
]


@pytest.fixture()
def table() -> pd.DataFrame:
    recs = []
    for i, (ds, split, status, labelled, yaw) in enumerate(ROWS):
        zero = 0.0 if labelled else NAN
        recs.append({"sample_id": f"{ds}/img{i}.jpg#0", "dataset": ds, "split": split, "root": f"data/{ds}",
                     "image_path": f"sub/img{i}.jpg", "pitch": zero, "yaw": yaw, "roll": zero, "labelled": labelled,
                     "status": status, "x1": float(i), "y1": 2.0 * i, "x2": i + 10.0, "y2": 2.0 * i + 10.0})
    return pd.DataFrame(recs)


def test_split_rows_are_every_ok_row_labelled_or_not(table: pd.DataFrame) -> None:
    np.testing.assert_array_equal(split_rows(table, "train"), [0, 2, 3, 5, 7])
    np.testing.assert_array_equal(split_rows(table, "test"), [4])
    assert split_rows(table, "train").dtype == np.int64
    assert has_rows(table, "test") and not has_rows(table.drop(index=4), "test")
    assert not has_rows(table.iloc[:0], "train")


def test_select_labelled_within_theta(table: pd.DataFrame) -> None:
    sel = select(table, "train")  # a split name = its labelled rows within ±99°
    np.testing.assert_array_equal(sel.rows, [0, 5])
    assert (sel.dropped, sel.unlabelled_left_out) == (2, 1)  # rows 2 and 7; row 3
    np.testing.assert_array_equal(select(table, RowQuery("train")).rows, sel.rows)
    np.testing.assert_array_equal(select(table, "test").rows, [4])


def test_select_unlabelled_datasets_theta(table: pd.DataFrame) -> None:
    sel = select(table, RowQuery("train", unlabelled=True))
    np.testing.assert_array_equal(sel.rows, [0, 3, 5])
    assert (sel.dropped, sel.unlabelled_left_out) == (2, 0)
    sel = select(table, RowQuery("train", ["b"]))
    np.testing.assert_array_equal(sel.rows, [5])
    assert (sel.dropped, sel.unlabelled_left_out) == (1, 1)
    np.testing.assert_array_equal(select(table, RowQuery("train", ("b",), unlabelled=True)).rows, [3, 5])
    np.testing.assert_array_equal(select(table, RowQuery("train", theta=20)).rows, [0])
    sel = select(table, RowQuery("train", theta=None))  # any finite angle
    np.testing.assert_array_equal(sel.rows, [0, 2, 5])
    assert sel.dropped == 1  # row 7 (NaN)
    with pytest.raises(ValueError, match=r"dataset\(s\) \['c'\] have no 'test' rows in my table"):
        select(table, RowQuery("test", ("a", "c")), "my table")
    with pytest.raises(ValueError, match=r"\['b'\] have no 'test' rows"):  # b has no test row at all
        select(table, RowQuery("test", ("b",)))


def test_paths_boxes_angles_ids(table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert image_file("data/a", "sub/x.jpg") == Path("data/a/sub/x.jpg")
    assert image_paths(table, [5, 0]) == [os.path.join("data", "b", "sub", "img5.jpg"),
                                         os.path.join("data", "a", "sub", "img0.jpg")]
    monkeypatch.chdir(tmp_path)  # a relative root is relative to the working directory
    assert image_paths(table, [5], absolute=True) == [str((tmp_path / "data/b/sub/img5.jpg").resolve())]
    absolute = table.assign(root=str(tmp_path / "elsewhere"))
    assert image_paths(absolute, [0]) == [str(tmp_path / "elsewhere" / "sub" / "img0.jpg")]
    np.testing.assert_array_equal(row_boxes(table, [5, 0]), [[5, 10, 15, 20], [0, 0, 10, 10]])
    assert row_boxes(table, [5]).dtype == np.float64
    np.testing.assert_array_equal(row_angles(table, np.array([0, 4])), [[0, 10, 0], [0, -99, 0]])
    assert np.isnan(row_angles(table)[3]).all()
    assert row_ids(table, [3, 0]) == ["b/img3.jpg#0", "a/img0.jpg#0"]
