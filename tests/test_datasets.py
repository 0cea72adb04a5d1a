"""Dataset readers, the manifest and `hpekd index` (docs/design.md §3, §7), on real-format files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.core.config import config_from_mapping, default_config, default_section
from pipeline.core.images import read_image
from pipeline.manifest.boxfile import FileBox, load_box_file, match_box_file
from pipeline.manifest.index import build_manifest, index_datasets, summarize
from pipeline.manifest.landmarks import landmark_box
from pipeline.manifest.schema import COLUMNS, read_boxes, read_manifest, to_frame, write_manifest
from pipeline.manifest.spec import DatasetSpec, IndexConfig
from tests.helpers.datasets import (
    biwi_rotation_file,
    face_points,
    make_300w_lp,
    make_aflw,
    make_aflw2000,
    make_biwi,
    make_biwi_npz,
    write_box_json,
    write_pose_mat,
)
from tests.helpers.params import write_params


def cfg(*datasets: dict, **kw) -> IndexConfig:
    return config_from_mapping(IndexConfig, {**default_section("index"), "datasets": list(datasets), **kw},
                               "test index")


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


# --------------------------------------------------------------------------- landmark box

def test_landmark_box_rule_and_missing_points() -> None:
    pts = np.array([[10.0, 20.0, 30.0, -1.0], [40.0, 50.0, 60.0, 5.0]])  # last point missing (negative)
    x1, y1, x2, y2 = landmark_box(pts)
    # w = 20, h = 20: left 0.4 w, top 0.4 h, right 0.4 (w + 0.4 w), bottom 0.12 (h + 0.4 h)
    assert (x1, y1, x2, y2) == pytest.approx((2.0, 32.0, 41.2, 63.36))
    assert landmark_box(pts.T) == pytest.approx((x1, y1, x2, y2))  # [N, 2] accepted too
    assert landmark_box(np.array([[5.0, -1.0], [5.0, -1.0]])) is None  # one valid point
    assert landmark_box(np.full((2, 21), -1.0)) is None


# --------------------------------------------------------------------------- 300W-LP / AFLW2000

def test_300w_lp_reader(tmp_path: Path) -> None:
    poses = {"AFW": [(10.0, -45.5, 3.25), (-20.0, 80.0, -5.0)], "AFW_Flip": [(10.0, 45.5, -3.25)]}
    rels = make_300w_lp(tmp_path / "lp", poses)
    make_300w_lp(tmp_path / "lp", {"HELEN": [(1.0, 2.0, 3.0)]}, landmarks_folder=True)
    df = build_manifest(cfg({"name": "lp", "format": "300w_lp", "root": str(tmp_path / "lp"),
                             "subsets": ["AFW", "AFW_Flip", "HELEN"]}))
    assert list(df.columns) == list(COLUMNS)
    assert df["image_path"].tolist() == rels + ["HELEN/HELEN_000.jpg"]
    assert df["sample_id"].tolist()[0] == "lp/AFW/AFW_000.jpg#0"
    assert set(df["split"]) == {"train"} and set(df["status"]) == {"ok"} and set(df["root"]) == {str(tmp_path / "lp")}
    expected = [p for s in ("AFW", "AFW_Flip") for p in poses[s]] + [(1.0, 2.0, 3.0)]
    np.testing.assert_allclose(df[["pitch", "yaw", "roll"]].to_numpy(), f32(expected), atol=1e-5)
    assert df["pitch"].dtype == np.float32
    # landmark box from pt2d (image .mat) and from landmarks/<subset>/<name>_pts.mat
    want = landmark_box(face_points(seed=0))
    np.testing.assert_allclose(df.loc[0, ["lm_x1", "lm_y1", "lm_x2", "lm_y2"]].to_numpy(float), want, rtol=1e-6)
    np.testing.assert_allclose(df.iloc[-1][["lm_x1", "lm_y1", "lm_x2", "lm_y2"]].to_numpy(float), want, rtol=1e-6)
    # the default 8 subsets: a missing one is an error naming the folder
    with pytest.raises(ValueError, match=r"lp/HELEN_Flip.*not found.*subsets"):
        build_manifest(cfg({"name": "lp", "format": "300w_lp", "root": str(tmp_path / "lp")}))


def test_aflw2000_reader_out_of_range_and_21_points(tmp_path: Path) -> None:
    rels = make_aflw2000(tmp_path / "a2k", [(5.0, 30.0, -2.0), (0.0, 120.0, 0.0), (-99.5, 0.0, 0.0)])
    df = build_manifest(cfg({"name": "aflw2000", "format": "aflw2000", "root": str(tmp_path / "a2k")}))
    assert df["image_path"].tolist() == rels
    assert set(df["split"]) == {"test"}  # auto → test
    assert df["status"].tolist() == ["ok", "rejected", "rejected"]
    assert df["reason"].tolist() == ["", "angle out of range", "angle out of range"]
    np.testing.assert_allclose(df.loc[1, ["pitch", "yaw", "roll"]].to_numpy(float), [0, 120, 0], atol=1e-5)  # kept
    pts = face_points(21, seed=0)
    pts[:, 2] = -1
    np.testing.assert_allclose(df.loc[0, ["lm_x1", "lm_y1", "lm_x2", "lm_y2"]].to_numpy(float), landmark_box(pts), rtol=1e-6)
    s = summarize(df)
    assert s["datasets"]["aflw2000"]["test"] == {"ok": 1, "rejected": 2}
    assert s["datasets"]["aflw2000"]["rejected_by_reason"] == {"angle out of range": 2}


def test_mat_without_pose_para(tmp_path: Path) -> None:
    root = tmp_path / "a2k"
    make_aflw2000(root, [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)])
    write_pose_mat(root / "image00001.mat", None, face_points(21))
    spec = {"name": "a", "format": "aflw2000", "root": str(root)}
    with pytest.raises(ValueError, match=r"image00001\.mat.*has no 'Pose_Para' \(1x7"):
        build_manifest(cfg(spec))
    df = build_manifest(cfg(spec, on_error="reject"))
    assert df["status"].tolist() == ["ok", "rejected"] and df.loc[1, "reason"] == "no Pose_Para in .mat"
    assert math.isnan(df.loc[1, "yaw"])
    (root / "image00001.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match=r"image00001\.mat.*could not be read as a MATLAB"):
        build_manifest(cfg(spec))


def test_unreadable_image(tmp_path: Path) -> None:
    root = tmp_path / "a2k"
    make_aflw2000(root, [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0), (7.0, 8.0, 9.0)])
    (root / "image00001.jpg").write_bytes(b"\xff\xd8 truncated garbage" * 4)
    (root / "image00002.jpg").write_bytes(b"")
    spec = {"name": "a", "format": "aflw2000", "root": str(root)}
    with pytest.raises(ValueError, match=r"image .*image00001\.jpg.*unreadable image \(expected a JPEG/PNG"):
        build_manifest(cfg(spec))
    df = build_manifest(cfg(spec, on_error="reject"))
    assert df["reason"].tolist() == ["", "unreadable image", "empty image file"]
    # without the decode check the garbage file passes, the empty one does not
    df = build_manifest(cfg(spec, on_error="reject", check_images=False))
    assert df["reason"].tolist() == ["", "", "empty image file"]


# --------------------------------------------------------------------------- BIWI

def test_biwi_rotation_helper_is_independent_of_reader() -> None:
    # the helper's R_file is a rotation and HopeNet's formulas written out here recover the angles
    r_file = biwi_rotation_file(12.0, -33.0, 7.5)
    np.testing.assert_allclose(r_file @ r_file.T, np.eye(3), atol=1e-12)
    r = r_file.T
    got = np.degrees([np.arctan2(r[2, 1], r[2, 2]), -np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2])),
                      -np.arctan2(r[1, 0], r[0, 0])])
    np.testing.assert_allclose(got, [12.0, -33.0, 7.5], atol=1e-9)


def test_biwi_raw_reader(tmp_path: Path) -> None:
    seqs = {"01": [(10.0, -40.0, 5.0), (0.0, 0.0, 0.0)], "02": [(-15.0, 60.0, -8.0)], "07": [(3.0, 4.0, 5.0)]}
    rels = make_biwi(tmp_path / "biwi", seqs)
    spec = {"name": "biwi", "format": "biwi", "root": str(tmp_path / "biwi")}
    df = build_manifest(cfg(spec))
    assert df["image_path"].tolist() == rels
    assert df["sample_id"].tolist()[0] == "biwi/hpdb/01/frame_00003_rgb.png#0"
    assert df["group"].tolist() == ["01", "01", "02", "07"]
    # split auto: the paper's protocol-3 test sequences (06, 07, 10, 13, 15, 18, 21, 22) are test
    assert df["split"].tolist() == ["train", "train", "train", "test"]
    assert set(build_manifest(cfg({**spec, "split": "test"}))["split"]) == {"test"}  # protocol 1: all test
    expected = [p for s in seqs.values() for p in s]
    np.testing.assert_allclose(df[["pitch", "yaw", "roll"]].to_numpy(float), expected, atol=1e-4)
    assert df["lm_x1"].isna().all()
    # protocol 3 with other test sequences
    df = build_manifest(cfg({**spec, "test_groups": ["02", "07"]}))
    assert df["split"].tolist() == ["train", "train", "test", "test"]
    with pytest.raises(ValueError, match=r"test_groups \['05'\] not found"):
        build_manifest(cfg({**spec, "test_groups": ["05"]}))
    # a broken pose file names the file
    (tmp_path / "biwi/hpdb/02/frame_00003_pose.txt").write_text("1 0 0\n0 1\n")
    with pytest.raises(ValueError, match=r"frame_00003_pose\.txt.*has 5 numbers; expected a 3x3 rotation"):
        build_manifest(cfg(spec))


def test_biwi_npz_extracts_images_deterministically(tmp_path: Path) -> None:
    poses = [(1.5, -20.0, 3.0), (-10.0, 45.0, 0.5), (0.0, 100.0, 0.0)]
    npz = tmp_path / "BIWI_test.npz"
    images = make_biwi_npz(npz, poses)
    out = tmp_path / "data" / "manifest.parquet"
    config = cfg({"name": "biwi_npz", "format": "biwi_npz", "root": str(npz)})
    summary = index_datasets(config, out)
    df = read_manifest(out)
    ex = tmp_path / "data" / "extracted" / "biwi_npz"
    assert set(df["root"]) == {ex.as_posix()}
    assert df["image_path"].tolist() == ["000000.png", "000001.png", "000002.png"]
    np.testing.assert_allclose(df[["pitch", "yaw", "roll"]].to_numpy(float), poses, atol=1e-5)
    assert df["status"].tolist() == ["ok", "ok", "rejected"] and summary["rejected"] == 1
    # npz pixels are BGR (FSA-Net used cv2): read back as RGB they are channel-reversed
    np.testing.assert_array_equal(read_image(ex / "000001.png"), images[1][..., ::-1])
    mtimes = {p.name: p.stat().st_mtime_ns for p in ex.iterdir()}
    (ex / "000007.png").write_bytes(b"stale")
    index_datasets(config, out)
    assert {p.name: p.stat().st_mtime_ns for p in ex.iterdir()} == mtimes  # identical files not rewritten, stale removed
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(ValueError, match=r"bad\.npz.*lacks array\(s\) \['image', 'pose'\]"):
        build_manifest(cfg({"name": "b", "format": "biwi_npz", "root": str(tmp_path / "bad.npz")}), tmp_path / "x")


# --------------------------------------------------------------------------- AFLW

def test_aflw_sqlite_reader(tmp_path: Path) -> None:
    r = np.radians
    make_aflw(tmp_path / "aflw", [
        ("0/image00002.jpg", [(39341, (r(10), r(-30), r(15)))]),
        ("3/image00035.jpg", [(40000, (r(-5), r(20), r(-25))), (39999, None)]),
        ("2/image01000.jpg", [(1, (r(0), r(150), r(0)))]),
    ])
    spec = {"name": "aflw", "format": "aflw", "root": str(tmp_path / "aflw"), "test_first": 1}
    df = build_manifest(cfg(spec))
    assert df["sample_id"].tolist() == ["aflw/flickr/0/image00002.jpg#39341", "aflw/flickr/3/image00035.jpg#39999",
                                        "aflw/flickr/3/image00035.jpg#40000", "aflw/flickr/2/image01000.jpg#1"]
    assert df["split"].tolist() == ["test", "train", "train", "train"]
    assert df["status"].tolist() == ["ok", "rejected", "ok", "rejected"]
    assert df["reason"].tolist() == ["", "no pose in FacePose", "", "angle out of range"]
    # AFLW roll has the opposite sign: (pitch, yaw, -roll)
    np.testing.assert_allclose(df.loc[[0, 2], ["pitch", "yaw", "roll"]].to_numpy(float), [[10, -30, -15], [-5, 20, 25]], atol=1e-5)
    np.testing.assert_allclose(df.loc[0, ["lm_x1", "lm_y1", "lm_x2", "lm_y2"]].to_numpy(float),
                               landmark_box(face_points(21, seed=39341)), rtol=1e-6)
    assert build_manifest(cfg({**spec, "test_first": None}))["split"].eq("test").all()  # default 2,000


def test_aflw_sqlite_missing_tables(tmp_path: Path) -> None:
    make_aflw(tmp_path / "aflw", [("0/a.jpg", [(1, (0.1, 0.2, 0.3))])], skip_tables=("FacePose", "FaceRect"))
    with pytest.raises(ValueError, match=r"aflw\.sqlite' lacks table\(s\) \['FacePose', 'FaceRect'\]; expected tables FaceImages"):
        build_manifest(cfg({"name": "aflw", "format": "aflw", "root": str(tmp_path / "aflw")}))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "aflw.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match=r"junk/aflw\.sqlite.*"):
        build_manifest(cfg({"name": "aflw", "format": "aflw", "root": str(tmp_path / "junk")}))


# --------------------------------------------------------------------------- box files

def test_box_file_loader(tmp_path: Path) -> None:
    data = {"AFW/a.jpg": [{"bbox": [1, 2, 30, 40], "type": "train", "faceid": 0},
                          {"bbox": [5.5, 6, 7, 8], "type": "train", "faceid": 1, "score": 0.9}],
            ".\\sub\\b.jpg": [{"bbox": [0, 0, 10, 10], "type": "test", "faceid": 3}],
            "image00002.jpg": [{"bbox": [74.5, 107.7, 389.4, 393.5]}]}  # AFLW2000.json: bbox only
    boxes = load_box_file(write_box_json(tmp_path / "b.json", data))
    assert boxes["AFW/a.jpg"][1] == FileBox((5.5, 6.0, 7.0, 8.0), "train", 1)  # unknown keys ignored
    assert boxes["sub/b.jpg"] == [FileBox((0, 0, 10, 10), "test", 3)]
    assert boxes["image00002.jpg"] == [FileBox((74.5, 107.7, 389.4, 393.5), None, None)]
    bad = {
        "not valid JSON": "{oops",
        r"expected a list of faces": json.dumps({"a.jpg": {"bbox": [0, 0, 1, 1]}}),
        r"entry 'a.jpg': face \{'type': 'test'\} has no 'bbox'": json.dumps({"a.jpg": [{"type": "test"}]}),
        r"entry 'a.jpg': bbox \[0, 0, 1\] must be 4 finite numbers": json.dumps({"a.jpg": [{"bbox": [0, 0, 1]}]}),
        r"bbox \['0', 0, 1, 1\] must be 4 finite numbers": json.dumps({"a.jpg": [{"bbox": ["0", 0, 1, 1]}]}),
        r"entry 'a.jpg': bbox \[5, 0, 1, 1\] must have x2 > x1": json.dumps({"a.jpg": [{"bbox": [5, 0, 1, 1]}]}),
        r"type 'val' must be one of": json.dumps({"a.jpg": [{"bbox": [0, 0, 1, 1], "type": "val"}]}),
        r"faceid '1' must be an integer": json.dumps({"a.jpg": [{"bbox": [0, 0, 1, 1], "faceid": "1"}]}),
        r"faceid 0 appears twice": json.dumps({"a.jpg": [{"bbox": [0, 0, 1, 1], "type": "test", "faceid": 0}] * 2}),
        r"top level is a list": "[]",
    }
    for i, (msg, text) in enumerate(bad.items()):
        (tmp_path / f"bad{i}.json").write_text(text)
        with pytest.raises(ValueError, match=rf"bad{i}\.json.*{msg}"):
            load_box_file(tmp_path / f"bad{i}.json")
    with pytest.raises(ValueError, match=r"missing\.json' not found"):
        load_box_file(tmp_path / "missing.json")


def test_box_file_matching_rule() -> None:
    entries = {"01/frame_00004_rgb.png": [FileBox((1, 1, 9, 9), "train")],    # BIWI, relative to hpdb/
               "0/image00002.jpg": [FileBox((1, 1, 5, 5), "test", 7), FileBox((5, 5, 9, 9), "test", 8)],
               "0/image00003": [FileBox((2, 2, 8, 8), "train", 9)],           # no extension
               "1/ghost.jpg": [FileBox((1, 1, 2, 2), "test")],
               "0/image00002.jpg#x": [], "age00002.jpg": [FileBox((0, 0, 1, 1))]}  # not at a folder boundary
    paths = ["hpdb/01/frame_00004_rgb.png", "flickr/0/image00002.jpg", "flickr/0/image00002.jpg",
             "flickr/0/image00003.jpg", "flickr/0/image00002.jpg"]
    faces = [0, 8, 7, 9, 6]
    m = match_box_file(entries, paths, faces, "f.json")
    assert {k: v.box for k, v in m.by_row.items()} == {0: (1, 1, 9, 9), 2: (1, 1, 5, 5), 1: (5, 5, 9, 9), 3: (2, 2, 8, 8)}
    assert m.unmatched == ["1/ghost.jpg", "age00002.jpg"] and m.entries == 6
    assert m.summary()["unmatched"] == 2
    # an image with several faces needs faceid
    with pytest.raises(ValueError, match=r"f\.json: entry 'a\.jpg' has no faceid but image 'x/a\.jpg' has 2 faces"):
        match_box_file({"a.jpg": [FileBox((0, 0, 1, 1))]}, ["x/a.jpg", "x/a.jpg"], [1, 2], "f.json")
    with pytest.raises(ValueError, match=r"entry 'a\.jpg' fits several images"):
        match_box_file({"a.jpg": [FileBox((0, 0, 1, 1))]}, ["x/a.jpg", "y/a.jpg"], [0, 0], "f.json")


# --------------------------------------------------------------------------- manifest & config

def test_manifest_round_trip_and_validation(tmp_path: Path) -> None:
    make_aflw2000(tmp_path / "a2k", [(1.0, 2.0, 3.0), (0.0, 150.0, 0.0)])
    df = build_manifest(cfg({"name": "a", "format": "aflw2000", "root": str(tmp_path / "a2k")}))
    write_manifest(df, tmp_path / "m.parquet")
    back = read_manifest(tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(back, df)
    assert back["yaw"].dtype == np.float32
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['status', 'reason'\]"):
        write_manifest(df.drop(columns=["status", "reason"]), tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()
    df.drop(columns=["group"]).to_parquet(tmp_path / "old.parquet")
    with pytest.raises(ValueError, match=r"manifest '.*old\.parquet' lacks column\(s\) \['group'\]"):
        read_manifest(tmp_path / "old.parquet")
    with pytest.raises(ValueError, match=r"column 'split' has value\(s\) \['val'\]"):
        write_manifest(df.assign(split="val"), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="duplicate sample_id"):
        write_manifest(pd.concat([df, df]), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match=r"nope\.parquet' not found: run `hpekd index`"):
        read_manifest(tmp_path / "nope.parquet")
    with pytest.raises(ValueError, match=r"boxes file .* lacks column\(s\) \['x1'"):
        read_boxes(tmp_path / "m.parquet")
    boxes = df.assign(x1=np.float32(0), y1=np.float32(0), x2=np.float32(5), y2=np.float32(5), box_source="file",
                      det_score=np.float32(np.nan), fallback=False)
    boxes.to_parquet(tmp_path / "b.parquet")
    assert len(read_boxes(tmp_path / "b.parquet")) == 2
    assert len(to_frame([])) == 0


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset format 'lfw'; known formats: \['300w_lp', 'aflw2000', 'biwi', 'biwi_npz', 'aflw', 'table', 'images'\]"):
        cfg({"name": "x", "format": "lfw", "root": "r"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['subset'\] in index.datasets\[0\]; known keys"):
        cfg({"name": "x", "format": "aflw2000", "root": "r", "subset": []})
    with pytest.raises(ValueError, match=r"key 'subsets' is not used by format 'aflw2000'"):
        cfg({"name": "x", "format": "aflw2000", "root": "r", "subsets": ["A"]})
    with pytest.raises(ValueError, match="duplicate dataset name"):
        cfg({"name": "x", "format": "aflw2000", "root": "r"}, {"name": "x", "format": "biwi", "root": "r"})
    with pytest.raises(ValueError, match="split 'val' must be one of"):
        DatasetSpec(name="x", format="biwi", root="r", split="val")
    with pytest.raises(ValueError, match="on_error 'skip'"):
        cfg({"name": "x", "format": "biwi", "root": "r"}, on_error="skip")
    with pytest.raises(ValueError, match=r"dataset 'x': folder '.*nowhere' not found \(expected the AFLW2000 folder"):
        build_manifest(cfg({"name": "x", "format": "aflw2000", "root": str(tmp_path / "nowhere")}))


# --------------------------------------------------------------------------- CLI

def _params(tmp_path: Path, datasets: list[dict], **kw) -> Path:
    """A complete params.yaml (the default) whose index section lists ``datasets``."""
    return write_params(tmp_path / "params.yaml", {"index": {"datasets": datasets, **kw}})


def test_cli_index(tmp_path: Path) -> None:
    from stages.index import cli

    make_300w_lp(tmp_path / "train", {"SYNTH": [(1.0, 2.0, 3.0), (4.0, -105.0, 6.0)]})
    make_aflw2000(tmp_path / "test", [(7.0, 8.0, 9.0)])
    params = _params(tmp_path, [
        {"name": "synth_train", "format": "300w_lp", "root": str(tmp_path / "train"), "split": "train", "subsets": ["SYNTH"]},
        {"name": "synth_test", "format": "aflw2000", "root": str(tmp_path / "test"), "split": "test"},
    ])
    out, summary = tmp_path / "data" / "manifest.parquet", tmp_path / "metrics" / "index.json"
    # --data-root (dvc.yaml passes params' data_root): a dataset outside it is refused before any work
    res = CliRunner().invoke(cli, ["--out", str(out), "--params", str(params), "--data-root", str(tmp_path / "train"),
                                   "--no-progress"])
    assert res.exit_code == 1 and "lies outside data_root" in res.output and "synth_test" in res.output, res.output
    assert not out.exists()
    res = CliRunner().invoke(cli, ["--out", str(out), "--summary", str(summary), "--params", str(params),
                                   "--data-root", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "synth_train: train: 1 ok / 1 rejected" in res.output and "rejected 1: angle out of range" in res.output
    assert len(read_manifest(out)) == 3
    s = json.loads(summary.read_text())
    assert s["rows"] == 3 and s["datasets"]["synth_test"]["test"] == {"ok": 1, "rejected": 0}


def test_cli_bad_inputs_nothing_written(tmp_path: Path) -> None:
    from stages.index import cli

    out = tmp_path / "manifest.parquet"
    runner = CliRunner()
    params = _params(tmp_path, [{"name": "a", "format": "aflw2000", "root": str(tmp_path / "missing")}])
    res = runner.invoke(cli, ["--out", str(out), "--params", str(params), "--no-progress"])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "Error: dataset 'a': folder" in res.output and "missing' not found" in res.output
    params = _params(tmp_path, [{"name": "a", "format": "300W-LP", "root": "x"}])
    res = runner.invoke(cli, ["--out", str(out), "--params", str(params)])
    assert res.exit_code == 1 and "unknown dataset format '300W-LP'; known formats" in res.output
    make_aflw2000(tmp_path / "a2k", [(1.0, 2.0, 3.0)])
    write_pose_mat(tmp_path / "a2k" / "image00000.mat", None, face_points(21))
    params = _params(tmp_path, [{"name": "a", "format": "aflw2000", "root": str(tmp_path / "a2k")}])
    res = runner.invoke(cli, ["--out", str(out), "--params", str(params), "--no-progress"])
    assert res.exit_code == 1 and "image00000.mat' has no 'Pose_Para'" in res.output
    assert not out.exists() and not list(tmp_path.glob(".manifest*"))


# --------------------------------------------------------------------------- synthetic data


def test_index_synthetic_angles_exact(tmp_path: Path) -> None:
    gen = pytest.importorskip("pipeline.synth.generate")
    gen.synthesize(default_config(gen.SynthConfig, "synthesize", workers=1, n_train=3, n_test=2, seed=7, size=64, label_noise={}), tmp_path / "synthetic", progress=False)
    out = tmp_path / "manifest.parquet"
    index_datasets(cfg(
        {"name": "synth_train", "format": "300w_lp", "root": str(tmp_path / "synthetic/train"), "split": "train", "subsets": ["SYNTH"]},
        {"name": "synth_test", "format": "aflw2000", "root": str(tmp_path / "synthetic/test"), "split": "test"},
    ), out)
    df = read_manifest(out)
    assert df["image_path"].tolist() == [f"SYNTH/SYNTH_{i:06d}.jpg" for i in range(3)] + [f"image{i:05d}.jpg" for i in range(2)]
    rendered = [gen.draw_sample(7, split, i, 64, 0.2).pose for split, n in (("train", 3), ("test", 2)) for i in range(n)]
    np.testing.assert_array_equal(df[["pitch", "yaw", "roll"]].to_numpy(), np.asarray(rendered, np.float64).astype(np.float32))
    ok = df["status"] == "ok"
    assert ok.sum() == sum(all(-99 <= a <= 99 for a in p) for p in rendered)
    assert df.loc[ok, "lm_x1"].notna().all()
