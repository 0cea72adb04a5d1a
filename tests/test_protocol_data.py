"""The protocol rehearsal's data (tests/helpers/protocol_data.py): four datasets in the real
on-disk layouts with the published box files, read back by the project's own readers.

``hpekd index`` (the real formats; BIWI and AFLW split ``from_file``) must give every face with
its exact label in the project's convention, the rows the real data makes rejected (a face
beyond ±99°, a frame missing from BIWI.json, an AFLW image missing from AFLW.json), both faces of
the two-face AFLW image and the JSON ``type`` as split; ``hpekd relabel`` (``source: file``) must
give every face its published box."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import yaml
from click.testing import CliRunner

from pipeline.core.angles import biwi_angles
from pipeline.core.overlay import compose
from pipeline.manifest.biwi import read_pose_txt
from pipeline.manifest.schema import read_boxes, read_manifest
from stages.cli import main
from tests.helpers.protocol_data import DatasetData, ProtocolData, make_protocol_data

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"300w_lp": "300w_lp", "aflw2000": "aflw2000", "biwi": "biwi", "aflw": "aflw"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ProtocolData:
    # data/raw/ as a user has it, so the shipped configs' paths (data/raw/...) resolve from its parent
    return make_protocol_data(tmp_path_factory.mktemp("protocol") / "data" / "raw")


def _params(tmp: Path, data: ProtocolData) -> Path:
    """The repository's params.yaml with only the index datasets and the relabel source changed."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    d = data.datasets
    params["index"]["datasets"] = [
        {"name": "300w_lp", "format": "300w_lp", "root": str(d["300w_lp"].root), "split": "train"},
        {"name": "aflw2000", "format": "aflw2000", "root": str(d["aflw2000"].root), "split": "test"},
        {"name": "biwi", "format": "biwi", "root": str(d["biwi"].root), "split": "from_file",
         "split_file": str(d["biwi"].json)},
        {"name": "aflw", "format": "aflw", "root": str(d["aflw"].root), "split": "from_file",
         "split_file": str(d["aflw"].json)},
    ]
    params["index"]["on_error"] = "raise"   # every file must be readable: no broken-file rejects
    params["relabel"].update(source="file", workers=1,
                             box_files={name: str(ds.json) for name, ds in d.items()})
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def indexed(data: ProtocolData, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    tmp = tmp_path_factory.mktemp("index")
    params = _params(tmp, data)
    manifest, boxes = tmp / "manifest.parquet", tmp / "boxes.parquet"
    _run(["index", "--out", str(manifest), "--summary", str(tmp / "index.json"), "--params", str(params), "--no-progress"])
    _run(["relabel", "--manifest", str(manifest), "--out", str(boxes), "--summary", str(tmp / "relabel.json"),
          "--no-cache", "--params", str(params), "--no-progress"])
    return read_manifest(manifest), read_boxes(boxes), json.loads((tmp / "relabel.json").read_text())


def _expected_status(fmt: str, face) -> tuple[str, str]:
    if fmt in ("biwi", "aflw") and face.key is None:
        return "rejected", f"not in split file {'BIWI' if fmt == 'biwi' else 'AFLW'}.json"
    if not face.in_range:
        return "rejected", "angle out of range"
    return "ok", ""


def test_counts_and_special_faces(data: ProtocolData) -> None:
    d = data.datasets
    assert {k: len(v.faces) for k, v in d.items()} == {"300w_lp": 96, "aflw2000": 24, "biwi": 36, "aflw": 31}
    assert sum(not f.in_range for f in d["aflw2000"].faces) == 1
    assert [f.path for f in d["biwi"].faces if f.key is None] == ["hpdb/01/frame_00003_rgb.png"]
    assert len([f for f in d["aflw"].faces if f.key is None]) == 1
    by_image: dict[str, list[int]] = {}
    for f in d["aflw"].faces:
        by_image.setdefault(f.path, []).append(f.face)
    two = [ids for ids in by_image.values() if len(ids) == 2]
    assert len(two) == 1 and len(set(two[0])) == 2
    assert {f.split for f in d["aflw"].faces if f.path == next(p for p, i in by_image.items() if len(i) == 2)} == {"test", "train"}
    assert {f.split for f in d["biwi"].faces if f.key} == {"train", "test"}
    assert sum(f.split == "test" for f in d["aflw"].faces) > 0
    folders = {f.path.split("/")[0] for f in d["300w_lp"].faces}
    assert folders == {"AFW", "AFW_Flip", "HELEN", "HELEN_Flip", "IBUG", "IBUG_Flip", "LFPW", "LFPW_Flip"}


def test_index_round_trip(data: ProtocolData, indexed) -> None:
    manifest, _, _ = indexed
    rows = manifest.set_index("sample_id")
    assert len(manifest) == sum(len(ds.faces) for ds in data.datasets.values())
    for fmt, ds in data.datasets.items():
        part = manifest[manifest["dataset"] == NAMES[fmt]]
        # the reader's order is the record's order
        assert part["sample_id"].tolist() == [ds.sample_id(NAMES[fmt], f) for f in ds.faces], fmt
        for face in ds.faces:
            row = rows.loc[ds.sample_id(NAMES[fmt], face)]
            assert row[["pitch", "yaw", "roll"]].to_numpy(float) == pytest.approx(face.pose, abs=1e-3), (fmt, face)
            assert (row["status"], row["reason"]) == _expected_status(fmt, face), (fmt, face)
            split = {"300w_lp": "train", "aflw2000": "test"}.get(fmt) or face.split or "train"
            assert row["split"] == split, (fmt, face)
    # the >99° AFLW2000 face is a rejected row, not an error
    bad = [f for f in data.aflw2000.faces if not f.in_range]
    assert rows.loc[data.aflw2000.sample_id("aflw2000", bad[0]), "reason"] == "angle out of range"
    # the two-face AFLW image: two rows, one per face_id
    aflw = manifest[manifest["dataset"] == "aflw"]
    two = aflw.groupby("image_path")["sample_id"].apply(list)
    two = two[two.map(len) == 2]
    assert len(two) == 1
    ids = sorted(int(s.rpartition("#")[2]) for s in two.iloc[0])
    assert ids == sorted(f.face for f in data.aflw.faces if f.path == two.index[0])
    # BIWI groups are the sequences; landmark boxes for the datasets that have landmarks
    biwi = manifest[manifest["dataset"] == "biwi"]
    assert (biwi["group"] == biwi["image_path"].str.split("/").str[1]).all()
    lm = manifest[manifest["dataset"].isin(["300w_lp", "aflw2000", "aflw"])]
    assert lm[["lm_x1", "lm_y1", "lm_x2", "lm_y2"]].notna().all().all()


def test_relabel_gives_published_boxes(data: ProtocolData, indexed) -> None:
    manifest, boxes, summary = indexed
    assert boxes["sample_id"].tolist() == manifest["sample_id"].tolist()
    by_id = boxes.set_index("sample_id")
    for fmt, ds in data.datasets.items():
        for face in ds.faces:
            row = by_id.loc[ds.sample_id(NAMES[fmt], face)]
            if _expected_status(fmt, face)[0] != "ok":
                assert row["status"] == "rejected", (fmt, face)
                continue
            assert row["status"] == "ok" and row["box_source"] == "file", (fmt, face, row["reason"])
            assert row[["x1", "y1", "x2", "y2"]].to_numpy(float) == pytest.approx(face.bbox, abs=1e-3), (fmt, face)
        entries = sum(1 for f in ds.faces if f.key is not None)
        assert summary["box_files"][NAMES[fmt]]["entries"] == entries
        assert summary["box_files"][NAMES[fmt]]["unmatched"] == 0


@pytest.mark.parametrize("protocol", [1, 2, 3])
def test_shipped_protocol_configs_read_it(protocol: int, data: ProtocolData, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """configs/protocolN.yaml as shipped (composed on the default, as `hpekd params apply` does),
    run where data/raw/ is and as dvc.yaml runs it (--data-root from the params): every face indexed."""
    params, _ = compose(ROOT / "configs/default.yaml", [ROOT / f"configs/protocol{protocol}.yaml"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(data.raw.parent.parent)
    summary = tmp_path / "index.json"
    _run(["index", "--out", str(tmp_path / "m.parquet"), "--summary", str(summary), "--data-root", params["data_root"],
          "--params", str(tmp_path / "params.yaml"), "--no-progress"])
    got = json.loads(summary.read_text())["datasets"]
    d = data.datasets
    if protocol == 1:   # BIWI all test: 01/frame_00003 is a row here (relabel finds no box for it)
        assert got["300w_lp"]["train"] == {"ok": len(d["300w_lp"].faces), "rejected": 0}
        assert got["aflw2000"]["test"] == {"ok": len(d["aflw2000"].faces) - 1, "rejected": 1}
        assert got["biwi"]["test"] == {"ok": len(d["biwi"].faces), "rejected": 0}
    else:
        fmt = {2: "aflw", 3: "biwi"}[protocol]
        listed = [f for f in d[fmt].faces if f.key is not None]
        assert got[fmt]["test"] == {"ok": sum(f.split == "test" for f in listed), "rejected": 0}
        assert got[fmt]["train"] == {"ok": sum(f.split == "train" for f in listed), "rejected": 1}
        assert got[fmt]["rejected_by_reason"] == {f"not in split file {fmt.upper()}.json": 1}


def test_files_in_the_real_formats(data: ProtocolData) -> None:
    raw = data.raw
    # box files: exactly the published shapes
    shapes = {"300W_LP.json": {"bbox"}, "AFLW2000.json": {"bbox"}, "BIWI.json": {"bbox", "type"},
              "AFLW.json": {"bbox", "faceid", "type"}}
    for name, keys in shapes.items():
        content = json.loads((raw / name).read_text())
        assert {frozenset(f) for faces in content.values() for f in faces} == {frozenset(keys)}, name
    assert "01/frame_00004_rgb.png" in json.loads((raw / "BIWI.json").read_text())
    assert "AFW/AFW_134212_1_0.jpg" in json.loads((raw / "300W_LP.json").read_text())
    # 300W-LP: Pose_Para 1×7 in radians, pt2d 2×68; flips under the same name; landmarks/ unflipped only
    w = raw / "300W_LP"
    mat = scipy.io.loadmat(str(w / "AFW" / "AFW_134212_1_0.mat"))
    assert mat["Pose_Para"].shape == (1, 7) and mat["pt2d"].shape == (2, 68)
    flip = scipy.io.loadmat(str(w / "AFW_Flip" / "AFW_134212_1_0.mat"))
    assert flip["Pose_Para"][0, :3] == pytest.approx(mat["Pose_Para"][0, :3] * [1, -1, -1])
    assert sorted(p.name for p in (w / "landmarks").iterdir()) == ["AFW", "HELEN", "IBUG", "LFPW"]
    assert (w / "landmarks" / "AFW" / "AFW_134212_1_0_pts.mat").is_file()
    assert (w / "IBUG" / "IBUG_image_092 _01_0.jpg").is_file()
    # AFLW2000: pt2d 2×21 with missing points
    pts = [scipy.io.loadmat(str(p))["pt2d"] for p in sorted((raw / "AFLW2000").glob("*.mat"))]
    assert all(p.shape == (2, 21) for p in pts) and any((p < 0).any() for p in pts)
    # BIWI: the clutter of the download, and the pose file in the BIWI text format
    hpdb = raw / "BIWI" / "hpdb"
    assert (hpdb / "readme.txt").is_file() and (hpdb / "01.obj").is_file()
    for name in ("depth.cal", "rgb.cal", "frame_00003_depth.bin", "frame_00003_pose.txt", "frame_00003_rgb.png"):
        assert (hpdb / "01" / name).is_file(), name
    assert (hpdb / "16" / "frame_00000_rgb.png").is_file()
    r_file, t = read_pose_txt(hpdb / "01" / "frame_00004_pose.txt")
    assert t is not None and np.allclose(r_file @ r_file.T, np.eye(3), atol=1e-8)
    assert biwi_angles(r_file) == pytest.approx(data.biwi.faces[1].pose, abs=1e-6)
    # AFLW: the real tables; roll negated; only visible feature points; one grayscale image
    con = sqlite3.connect(raw / "aflw" / "data" / "aflw.sqlite")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"FaceImages", "Faces", "FacePose", "FaceRect", "FeatureCoords"} <= tables
    face = data.aflw.faces[0]
    pitch, yaw, roll = con.execute("SELECT pitch, yaw, roll FROM FacePose WHERE face_id = ?", (face.face,)).fetchone()
    assert np.degrees([pitch, yaw, -roll]) == pytest.approx(face.pose)
    n_points = [n for (n,) in con.execute("SELECT COUNT(*) FROM FeatureCoords GROUP BY face_id")]
    assert max(n_points) == 21 and min(n_points) < 21
    (gray,) = con.execute("SELECT filepath FROM FaceImages WHERE bw = 1").fetchone()
    con.close()
    import cv2

    assert cv2.imread(str(raw / "aflw" / "data" / "flickr" / gray), cv2.IMREAD_UNCHANGED).ndim == 2


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_sizes(tmp_path: Path) -> None:
    kw = dict(n_300wlp=11, n_aflw2000=3, n_biwi_per_seq=2, biwi_sequences=("01", "06"), n_aflw_images=8, size=64)
    a = make_protocol_data(tmp_path / "a", **kw)  # type: ignore[arg-type]
    b = make_protocol_data(tmp_path / "b", **kw)  # type: ignore[arg-type]
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert ta.keys() == tb.keys() and all(ta[k] == tb[k] for k in ta)
    assert a.datasets["aflw"].faces == b.datasets["aflw"].faces
    assert [len(ds.faces) for ds in a.datasets.values()] == [11, 3, 4, 9]
    c = make_protocol_data(tmp_path / "c", **{**kw, "with_300wlp_json": False})  # type: ignore[arg-type]
    assert c.w300lp.json is None and not (tmp_path / "c" / "300W_LP.json").exists()
    assert isinstance(c.w300lp, DatasetData)
