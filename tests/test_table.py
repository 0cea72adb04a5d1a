"""Your own data (README "Training on your own data"): the ``table`` and ``images`` dataset formats, bad rows, the
labelled / unlabelled counts, and relabel with ``source: table`` and the given-box rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.core.config import default_config
from pipeline.core.images import write_image
from pipeline.manifest.index import IndexConfig, build_manifest
from pipeline.manifest.schema import read_manifest
from pipeline.relabel import detect
from pipeline.relabel.config import RelabelConfig
from pipeline.relabel.job import relabel
from pipeline.relabel.select import select_face
from tests.helpers.params import write_params
from tests.helpers.relabel import BlobDetector, blob_image

HEADER = "image,pitch,yaw,roll,x1,y1,x2,y2,split,face,group\n"


def _images(root: Path, names: list[str], size: int = 64) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        write_image(root / name, rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _config(spec: dict, on_error: str = "raise") -> IndexConfig:
    return default_config(IndexConfig, "index", datasets=({"name": "mine", "format": "table", **spec},), on_error=on_error, workers=1)


def test_good_table_labelled_unlabelled_box_split_face_group(tmp_path: Path) -> None:
    _images(tmp_path / "img", ["a.jpg", "sub/b.png", "c.jpg"])
    (tmp_path / "t.csv").write_text(HEADER + "\n".join([
        "a.jpg,1.5,-20,3,4,5,40,50,train,0,s1",
        "a.jpg,,,,30,30,60,60,,1,s1",          # a second face, unlabelled
        "sub/b.png,-7,80.25,0,,,,,test,,",
        "c.jpg , , , ,,,,,,,",                  # unlabelled, spaces around cells
    ]) + "\n")
    df = build_manifest(_config({"root": str(tmp_path / "img"), "table": str(tmp_path / "t.csv")}))
    assert df["sample_id"].tolist() == ["mine/a.jpg#0", "mine/a.jpg#1", "mine/sub/b.png#0", "mine/c.jpg#0"]
    assert df["labelled"].tolist() == [True, False, True, False]
    assert (df["status"] == "ok").all() and df["split"].tolist() == ["train", "train", "test", "train"]
    assert df.loc[0, ["pitch", "yaw", "roll"]].tolist() == [1.5, -20.0, 3.0]
    assert df.loc[2, "yaw"] == np.float32(80.25) and math.isnan(df.loc[1, "pitch"])
    assert df.loc[0, ["face_x1", "face_y1", "face_x2", "face_y2"]].tolist() == [4, 5, 40, 50]
    assert np.isnan(df.loc[2, ["face_x1", "face_y1", "face_x2", "face_y2"]].to_numpy(float)).all()
    assert df["group"].tolist() == ["s1", "s1", "", ""]
    # the same table as parquet gives the same manifest
    raw = pd.read_csv(tmp_path / "t.csv", skipinitialspace=True)
    raw.to_parquet(tmp_path / "t.parquet", index=False)
    df2 = build_manifest(_config({"root": str(tmp_path / "img"), "table": str(tmp_path / "t.parquet")}))
    pd.testing.assert_frame_equal(df, df2)
    # the paper's convention: pitch negated in the file
    df3 = build_manifest(_config({"root": str(tmp_path / "img"), "table": str(tmp_path / "t.csv"),
                                  "convention": "kd_oe_hpe"}))
    assert df3.loc[0, "pitch"] == -1.5 and df3.loc[2, "pitch"] == 7.0 and df3.loc[0, "yaw"] == -20.0


BAD_ROWS = [
    # (row, reason in the rejected row, column named by on_error: raise)
    ("missing.jpg,1,2,3,,,,,,,", "image not found", "image"),
    ("a.jpg,abc,2,3,,,,,,,", "non-numeric pitch 'abc'", "pitch"),
    ("a.jpg,1,2,,,,,,,,", "angle(s) ['roll'] empty", "roll"),
    ("a.jpg,1,2,3,50,5,40,50,,,", "inverted box (50, 5, 40, 50)", "x2"),
    ("a.jpg,1,2,3,4,5,,50,,,", "box partly empty", "x2"),
    ("a.jpg,1,2,3,,,,,val,,", "unknown split 'val' (expected train or test)", "split"),
    ("a.jpg,,,,,,,,test,,", "unlabelled row in the test split", "split"),
    ("a.jpg,1,2,3,,,,,,1.5,", "face '1.5' must be an integer >= 0", "face"),
    ("/abs/a.jpg,1,2,3,,,,,,,", "must be relative to root", "image"),
    ("a.jpg,4,5,6,,,,,,0,", "duplicate image + face 'a.jpg' #0 (first at row 1)", "image"),
]


def test_every_bad_row_kind_is_a_rejected_row_with_its_reason(tmp_path: Path) -> None:
    _images(tmp_path / "img", ["a.jpg"])
    (tmp_path / "t.csv").write_text(HEADER + "a.jpg,1,2,3,,,,,,0,\n" + "\n".join(r for r, _, _ in BAD_ROWS) + "\n")
    df = build_manifest(_config({"root": str(tmp_path / "img"), "table": str(tmp_path / "t.csv")}, "reject"))
    assert len(df) == 1 + len(BAD_ROWS)  # nothing dropped
    assert df.loc[0, "status"] == "ok"
    for k, (_, reason, _) in enumerate(BAD_ROWS, start=1):
        assert df.loc[k, "status"] == "rejected" and reason in df.loc[k, "reason"], (k, df.loc[k, "reason"])
    assert df["sample_id"].is_unique  # the duplicate keeps a distinct id


@pytest.mark.parametrize("row,reason,column", BAD_ROWS, ids=[c + ":" + r[:12] for _, r, c in BAD_ROWS])
def test_on_error_raise_names_file_row_and_column(tmp_path: Path, row: str, reason: str, column: str) -> None:
    _images(tmp_path / "img", ["a.jpg"])
    table = tmp_path / "t.csv"
    table.write_text(HEADER + "a.jpg,1,2,3,,,,,,0,\n" + row + "\n")
    with pytest.raises(ValueError, match=rf"table '{table}': row 2, column '{column}': ") as err:
        build_manifest(_config({"root": str(tmp_path / "img"), "table": str(table)}))
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_file_level_errors(tmp_path: Path) -> None:
    _images(tmp_path / "img", ["a.jpg"])
    root = str(tmp_path / "img")
    with pytest.raises(ValueError, match=r"table '.*nope.csv' not found"):
        build_manifest(_config({"root": root, "table": str(tmp_path / "nope.csv")}))
    (tmp_path / "t.csv").write_text("image,pitch,yaw\na.jpg,1,2\n")
    with pytest.raises(ValueError, match=r"t.csv' lacks column\(s\) \['roll'\]; expected columns \['image', 'pitch', 'yaw', 'roll'\]"):
        build_manifest(_config({"root": root, "table": str(tmp_path / "t.csv")}))
    (tmp_path / "t.csv").write_text("image,pitch,yaw,roll,x1,y1\na.jpg,1,2,3,4,5\n")
    with pytest.raises(ValueError, match=r"has box column\(s\) \['x1', 'y1'\] but not all of"):
        build_manifest(_config({"root": root, "table": str(tmp_path / "t.csv")}))
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unsupported file type '.txt'"):
        build_manifest(_config({"root": root, "table": str(tmp_path / "t.txt")}))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"bad.parquet' could not be read"):
        build_manifest(_config({"root": root, "table": str(tmp_path / "bad.parquet")}))
    with pytest.raises(ValueError, match=r"format table needs table:"):
        _config({"root": root})
    with pytest.raises(ValueError, match=r"convention must be one of \['hpekd', 'kd_oe_hpe'\]"):
        _config({"root": root, "table": "t.csv", "convention": "opencv"})
    with pytest.raises(ValueError, match=r"key 'table' is not used by format 'aflw2000'"):
        default_config(IndexConfig, "index", datasets=({"name": "x", "format": "aflw2000", "root": root, "table": "t.csv"},))


def test_images_format_recursive_unlabelled_training_rows(tmp_path: Path) -> None:
    _images(tmp_path / "faces", ["b.jpg", "a/x.png", "a/y.JPG"])
    (tmp_path / "faces" / "notes.txt").write_text("not an image")
    cfg = default_config(IndexConfig, "index", datasets=({"name": "web", "format": "images", "root": str(tmp_path / "faces")},), workers=1)
    df = build_manifest(cfg)
    assert df["image_path"].tolist() == ["a/x.png", "a/y.JPG", "b.jpg"]
    assert (~df["labelled"]).all() and (df["split"] == "train").all() and (df["status"] == "ok").all()
    assert np.isnan(df[["pitch", "yaw", "roll"]].to_numpy(float)).all()
    with pytest.raises(ValueError, match=r"format images holds unlabelled images, which are training rows only"):
        default_config(IndexConfig, "index", datasets=({"name": "web", "format": "images", "root": "x", "split": "test"},))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"dataset 'web': no images under"):
        build_manifest(default_config(IndexConfig, "index", datasets=({"name": "web", "format": "images", "root": str(tmp_path / "empty")},)))


def test_cli_index_counts_labelled_and_unlabelled(tmp_path: Path) -> None:
    from stages.index import cli

    _images(tmp_path / "img", ["a.jpg", "b.jpg", "c.jpg"])
    _images(tmp_path / "web", ["u1.jpg", "u2.jpg"])
    (tmp_path / "t.csv").write_text("image,pitch,yaw,roll\na.jpg,1,2,3\nb.jpg,,,\nc.jpg,4,5,6\n")
    params = write_params(tmp_path / "params.yaml", {"index": {"workers": 1, "datasets": [
        {"name": "mine", "format": "table", "root": str(tmp_path / "img"), "table": str(tmp_path / "t.csv")},
        {"name": "web", "format": "images", "root": str(tmp_path / "web")},
    ]}})
    out, summary = tmp_path / "manifest.parquet", tmp_path / "index.json"
    res = CliRunner().invoke(cli, ["--out", str(out), "--summary", str(summary), "--params", str(params), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "5 ok (2 labelled, 3 unlabelled)" in res.output and "web: train: 2 ok / 0 rejected; 2 unlabelled" in res.output
    s = json.loads(summary.read_text())
    assert (s["labelled"], s["unlabelled"]) == (2, 3)
    assert s["datasets"]["mine"]["labelled"] == 2 and s["datasets"]["web"]["unlabelled"] == 2
    assert read_manifest(out)["labelled"].sum() == 2


# --------------------------------------------------------------------------- relabel


@pytest.fixture
def blobs():
    detect.register_detector("blobs", lambda **kw: BlobDetector(**kw))
    yield
    detect._REGISTERED.pop("blobs", None)


def test_select_face_given_box_rule() -> None:
    dets = np.array([[0, 0, 20, 20, 0.99], [40, 40, 60, 60, 0.6], [75, 40, 95, 60, 0.8]])
    assert select_face(dets, 100, 100, given_box=(70, 35, 99, 65))[0] == 2   # not the centre face
    i, _, why = select_face(dets, 100, 100, given_box=(20, 70, 35, 90))
    assert i is None and "with the given face box < min_overlap" in why


def test_relabel_source_table_and_detector_on_unlabelled_images(tmp_path: Path, blobs: None) -> None:
    img = tmp_path / "img"
    write_image(img / "two.png", blob_image((100, 100), [(2, 2, 22, 22, 0.95), (42, 40, 62, 60, 0.7)]))
    write_image(img / "one.png", blob_image((100, 100), [(30, 30, 60, 60, 0.9)]))
    (tmp_path / "t.csv").write_text(
        "image,pitch,yaw,roll,x1,y1,x2,y2\n"
        "two.png,1,2,3,0,0,24,24\n"     # labelled, box on the corner face
        "one.png,,,,,,,\n")             # unlabelled, no box
    manifest = build_manifest(_config({"root": str(img), "table": str(tmp_path / "t.csv")}))
    boxes, summary = relabel(manifest, default_config(RelabelConfig, "relabel", source="table", workers=1), progress=False)
    assert boxes.loc[0, ["x1", "y1", "x2", "y2"]].tolist() == [0, 0, 24, 24] and boxes.loc[0, "box_source"] == "table"
    assert boxes.loc[1, "status"] == "rejected" and boxes.loc[1, "reason"] == "no box in table"
    boxes, summary = relabel(manifest, default_config(RelabelConfig, "relabel", source="detector", detector="blobs", workers=1,
                                                     score_threshold=0.0), progress=False)
    # the given box picks the corner face over the centre one; the unlabelled image gets its face
    assert boxes.loc[0, ["x1", "y1", "x2", "y2"]].tolist() == [2, 2, 22, 22]
    assert boxes.loc[1, "status"] == "ok" and boxes.loc[1, ["x1", "x2"]].tolist() == [30, 60]
    assert summary["unlabelled"] == 1 and summary["selected_by"] == {"given box": 1, "centre": 1}


def test_cli_index_bad_row_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    from stages.index import cli

    _images(tmp_path / "img", ["a.jpg"])
    (tmp_path / "t.csv").write_text("image,pitch,yaw,roll\na.jpg,1,2,3\na.jpg,x,2,3\n")
    params = write_params(tmp_path / "params.yaml", {"index": {"workers": 1, "datasets": [
        {"name": "mine", "format": "table", "root": str(tmp_path / "img"), "table": str(tmp_path / "t.csv")}]}})
    out = tmp_path / "manifest.parquet"
    res = CliRunner().invoke(cli, ["--out", str(out), "--params", str(params), "--no-progress"])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0
    assert f"Error: table '{tmp_path / 't.csv'}': row 2, column 'pitch': non-numeric pitch 'x'" in res.output
    assert "Traceback" not in res.output and not out.exists()
