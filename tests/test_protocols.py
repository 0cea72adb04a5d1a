"""The paper's protocols as published: box files in the shape of AndreySheka/kd_oe_hpe's
``data/*.json`` on tiny datasets in the real AFLW2000, BIWI and AFLW layouts; ``hpekd index``
(``split: from_file``) + ``hpekd relabel`` (``source: file``) give every face its published box
and split; the shipped protocol configs are consistent with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.core.config import default_config
from pipeline.core.overlay import compose
from pipeline.manifest.schema import read_boxes, read_manifest
from pipeline.relabel.config import RelabelConfig
from stages.cli import main
from stages.common import STUDENT_LISTS
from tests.helpers.datasets import make_aflw, make_aflw2000, make_biwi, write_box_json
from tests.helpers.params import write_params

ROOT = Path(__file__).resolve().parents[1]


def _box(i: int) -> list[float]:
    return [1.0 + i, 2.0 + 0.5 * i, 20.0 + i, 22.5 + 0.25 * i]


def _published(tmp_path: Path) -> dict[str, Path]:
    """Datasets in the real layouts + box files in the published shape of each."""
    raw = tmp_path / "raw"
    a2k = make_aflw2000(raw / "AFLW2000", [(5.0, 10.0, -3.0), (1.0, -20.0, 4.0), (0.0, 30.0, 0.0)])
    # AFLW2000.json: bbox only, keys relative to the AFLW2000 folder
    write_box_json(raw / "AFLW2000.json", {rel: [{"bbox": _box(i)}] for i, rel in enumerate(a2k)})
    biwi = make_biwi(raw / "BIWI", {"01": [(0.0, 10.0, 0.0), (0.0, 12.0, 1.0)], "06": [(3.0, -8.0, 2.0)],
                                     "07": [(1.0, 1.0, 1.0)]})
    # BIWI.json: bbox + type, keys relative to hpdb/; frame 4 of sequence 01 is not in the file
    types = {"01": "train", "06": "test", "07": "test"}
    write_box_json(raw / "BIWI.json", {rel[len("hpdb/"):]: [{"bbox": _box(i), "type": types[rel.split("/")[1]]}]
                                       for i, rel in enumerate(biwi) if rel != "hpdb/01/frame_00004_rgb.png"})
    r = np.radians
    make_aflw(raw / "aflw" / "data", [
        ("0/image00002.jpg", [(46712, (r(10), r(-30), r(15)))]),
        ("2/image00004.jpg", [(53103, (r(-5), r(20), r(-25))), (53104, (r(2), r(40), r(5)))]),  # two faces
        ("3/image00035.jpg", [(39341, (r(1), r(2), r(3)))]),
    ])
    # AFLW.json: bbox + type + faceid, keys relative to flickr/, plus keys the reader ignores
    write_box_json(raw / "AFLW.json", {
        "0/image00002.jpg": [{"bbox": _box(0), "faceid": 46712, "type": "test", "pose": [0, 0, 0]}],
        "2/image00004.jpg": [{"bbox": _box(1), "faceid": 53103, "type": "train"},
                             {"bbox": _box(2), "faceid": 53104, "type": "test"}],
        "3/image00035.jpg": [{"bbox": _box(3), "faceid": 39341, "type": "train"}],
        "9/image09999.jpg": [{"bbox": _box(4), "faceid": 1, "type": "train"}],   # an image this copy lacks
    })
    return {"raw": raw}


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return res.output


def _index_and_relabel(tmp_path: Path, datasets: list[dict], box_files: dict[str, str]):
    params = write_params(tmp_path / "params.yaml", {"index": {"datasets": datasets, "on_error": "reject"},
                                                     "relabel": {"source": "file", "box_files": box_files, "workers": 1}})
    manifest, boxes, summary = tmp_path / "manifest.parquet", tmp_path / "boxes.parquet", tmp_path / "relabel.json"
    _run(["index", "--out", str(manifest), "--summary", str(tmp_path / "index.json"), "--params", str(params),
          "--no-progress"])
    out = _run(["relabel", "--manifest", str(manifest), "--out", str(boxes), "--summary", str(summary),
                "--no-cache", "--params", str(params), "--no-progress"])
    return read_manifest(manifest), read_boxes(boxes), json.loads(summary.read_text()), out


def test_published_boxes_and_splits(tmp_path: Path) -> None:
    raw = _published(tmp_path)["raw"]
    datasets = [
        {"name": "aflw2000", "format": "aflw2000", "root": str(raw / "AFLW2000"), "split": "test"},
        {"name": "biwi", "format": "biwi", "root": str(raw / "BIWI"), "split": "from_file",
         "split_file": str(raw / "BIWI.json")},
        {"name": "aflw", "format": "aflw", "root": str(raw / "aflw" / "data"), "split": "from_file",
         "split_file": str(raw / "AFLW.json")},
    ]
    box_files = {"aflw2000": str(raw / "AFLW2000.json"), "biwi": str(raw / "BIWI.json"), "aflw": str(raw / "AFLW.json")}
    manifest, boxes, summary, printed = _index_and_relabel(tmp_path, datasets, box_files)
    by_id = boxes.set_index("sample_id")
    published = {}
    for name, path in box_files.items():
        prefix = {"aflw2000": "", "biwi": "hpdb/", "aflw": "flickr/"}[name]
        for rel, faces in json.loads(Path(path).read_text()).items():
            for f in faces:
                published[f"{name}/{prefix}{rel}#{f.get('faceid', 0)}"] = f
    ok = boxes[boxes["status"] == "ok"]
    assert len(ok) == 3 + 3 + 4
    for sid, row in ok.set_index("sample_id").iterrows():  # every face: its published box and split
        f = published[sid]
        assert row[["x1", "y1", "x2", "y2"]].tolist() == pytest.approx(f["bbox"]) and row["box_source"] == "file"
        assert row["split"] == f.get("type", "test")
    # the BIWI frame absent from BIWI.json stays, rejected; the AFLW entry of a missing image is reported
    miss = by_id.loc["biwi/hpdb/01/frame_00004_rgb.png#0"]
    assert miss["status"] == "rejected" and miss["reason"] == "not in split file BIWI.json"
    assert manifest["sample_id"].tolist() == boxes["sample_id"].tolist()
    assert summary["box_files"]["aflw"]["unmatched"] == 1
    assert summary["box_files"]["aflw"]["unmatched_examples"] == ["9/image09999.jpg#1"]
    assert summary["box_files"]["biwi"]["unmatched"] == 0
    assert "aflw: 1 of 5 box-file entries match no manifest row, e.g. 9/image09999.jpg#1" in printed
    assert by_id.loc["aflw/flickr/2/image00004.jpg#53104", "split"] == "test"
    assert by_id.loc["aflw/flickr/2/image00004.jpg#53103", "split"] == "train"


def test_biwi_auto_split_is_the_papers_protocol3(tmp_path: Path) -> None:
    raw = _published(tmp_path)["raw"]
    datasets = [{"name": "biwi", "format": "biwi", "root": str(raw / "BIWI" / "hpdb"), "split": "auto"}]
    manifest, boxes, _, _ = _index_and_relabel(tmp_path, datasets, {"biwi": str(raw / "BIWI.json")})
    assert dict(zip(manifest["group"], manifest["split"])) == {"01": "train", "06": "test", "07": "test"}
    # root = hpdb itself: image paths are "01/frame…", the keys still match
    assert boxes.loc[boxes["image_path"] == "06/frame_00003_rgb.png", "box_source"].tolist() == ["file"]


def test_box_file_of_another_dataset_is_one_line_error(tmp_path: Path) -> None:
    raw = _published(tmp_path)["raw"]
    params = write_params(tmp_path / "params.yaml", {
        "index": {"datasets": [{"name": "biwi", "format": "biwi", "root": str(raw / "BIWI"), "split": "test"}]},
        "relabel": {"source": "file", "box_files": {"biwi": str(raw / "AFLW.json")}, "workers": 1}})
    runner = CliRunner()
    assert runner.invoke(main, ["index", "--out", str(tmp_path / "m.parquet"), "--params", str(params),
                                "--no-progress"]).exit_code == 0
    res = runner.invoke(main, ["relabel", "--manifest", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "b.parquet"),
                               "--summary", str(tmp_path / "s.json"), "--no-cache", "--params", str(params), "--no-progress"])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0
    assert "AFLW.json' matched no row of dataset 'biwi'" in res.output and "Traceback" not in res.output
    # split_file without types, and from_file without a file
    write_params(params, {"index": {"datasets": [
        {"name": "a", "format": "aflw2000", "root": str(raw / "AFLW2000"), "split": "from_file",
         "split_file": str(raw / "AFLW2000.json")}]}})
    res = runner.invoke(main, ["index", "--out", str(tmp_path / "m2.parquet"), "--params", str(params), "--no-progress"])
    assert res.exit_code == 1 and "AFLW2000.json': entry 'image00000.jpg' has no 'type'" in res.output
    write_params(params, {"index": {"datasets": [
        {"name": "a", "format": "aflw2000", "root": str(raw / "AFLW2000"), "split": "from_file"}]}})
    res = runner.invoke(main, ["index", "--out", str(tmp_path / "m2.parquet"), "--params", str(params), "--no-progress"])
    assert res.exit_code == 1 and "split: from_file needs split_file" in res.output


def _composed(*overlays: str) -> dict:
    params, _ = compose(ROOT / "configs/default.yaml", [ROOT / "configs" / o for o in overlays])
    return params


@pytest.mark.parametrize("protocol", ["1", "1_detector", "2", "3"])
def test_protocol_configs(protocol: str) -> None:
    p = _composed(f"protocol{protocol}.yaml")
    paper = _composed("paper.yaml")
    for section in ("train_teacher", "evaluate", "teacher_labels", "ensemble_grid", "train_student", *STUDENT_LISTS):
        assert p[section] == paper[section], section  # the paper's recipe
    # real data only, under data/raw, results under the protocol's own name
    assert (p["run"], p["data_root"], p["synthetic"]) == (f"protocol{protocol[0]}", "data/raw", [])
    relabel = default_config(RelabelConfig, "relabel", **p["relabel"])
    specs = p["index"]["datasets"]
    assert all(s["root"].startswith("data/raw/") for s in specs)
    names = {s["name"] for s in specs}
    assert set(p["relabel"]["box_files"]) == names
    assert all(path.startswith("data/raw/") and path.endswith(".json") for path in p["relabel"]["box_files"].values())
    detected = {"300w_lp"} if protocol == "1_detector" else set()  # YuNet boxes for 300W-LP, published ones for the rest
    assert {n: relabel.source_for(n) for n in names} == {n: "detector" if n in detected else "file" for n in names}
    assert set(relabel.file_box_files()) == names - detected
    splits = {s["name"]: s["split"] for s in specs}
    if protocol.startswith("1"):
        assert splits == {"300w_lp": "train", "aflw2000": "test", "biwi": "test"}
    else:
        name = {"2": "aflw", "3": "biwi"}[protocol]
        assert splits == {name: "from_file"}
        assert specs[0]["split_file"] == p["relabel"]["box_files"][name]
