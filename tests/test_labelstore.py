"""The Zarr v3 layout of the teacher-label store (docs/design.md §6), independent of any network."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline.core.views import views_array
from pipeline.teacher import labelread, labelstore
from pipeline.teacher.encoding import Encoding
from pipeline.teacher.ensemble import ensemble_size
from pipeline.teacher.labelread import load_teacher_labels
from pipeline.teacher.provenance import Bins, Ensemble, Manifest, TeacherInfo, Views, diff_attrs, store_provenance


def _attrs(n=10, v=2, shard=4, chunk=2, p=2, encoding="float16"):
    lay = labelstore.Layout(n, v, 198, shard, chunk)
    prov = store_provenance(
        teacher=TeacherInfo("ab" * 32, "stage1", {"backbone": "resnet18"}, "resnet18", "bin1"),
        bins=Bins(1, 99, 198), ensemble=Ensemble(p, 1, ensemble_size(p, 1)), input_size=(32, 32),
        manifest=Manifest("cd" * 32, "boxes.parquet", "train", "ok", n, 0),
        views=Views(0, v, 0.5, 15.0, "identity", ["flip", "angle_deg"]),
        layout=lay.to_dict(), encoding=Encoding(encoding, 198).to_dict(), package="test",
    )
    return prov.to_attrs(), lay


def _probs(rows, v, seed):
    x = np.random.default_rng(seed).random((rows, v, 3, 198)) + 0.01
    return (x / x.sum(-1, keepdims=True)).astype(np.float16)


@pytest.mark.parametrize("url", ["local", "file", "memory://lstest/a.zarr"])
def test_layout_write_read_any_fsspec_path(tmp_path, url):
    path = {"local": str(tmp_path / "a.zarr"), "file": f"file://{tmp_path}/b.zarr"}.get(url, url)
    attrs, lay = _attrs()
    ids = [f"d/img{i}#0" for i in range(10)]
    g = labelstore.create_layout(path, attrs, ids, np.arange(10) * 2, views_array(ids, 2, 0))
    assert lay.n_shards == 3 and lay.shard_range(2) == (8, 10)
    assert g["probs"].shards == (4, 2, 3, 198) and g["probs"].chunks == (2, 2, 3, 198)
    assert labelstore.done_flags(g).tolist() == [0, 0, 0]
    blocks = [_probs(4, 2, 0), _probs(4, 2, 1), _probs(2, 2, 2)]
    for k in (2, 0):
        labelstore.write_shard(g, k, blocks[k])
    rec = labelread.info(path)
    assert (rec["shards_done"], rec["rows_done"], rec["complete"]) == (2, 6, False)
    with pytest.raises(ValueError, match=r"shards \[1\] not done"):
        load_teacher_labels(path).probs()
    labelstore.write_shard(g, 1, blocks[1])
    np.testing.assert_array_equal(load_teacher_labels(path).probs(), np.concatenate(blocks))
    assert list(load_teacher_labels(path).sample_ids) == ids
    assert labelread.verify(path) == []
    # plain zarr reads it too
    z = zarr.open_group(labelstore.store_for(path, read_only=True), mode="r")
    assert z["probs"].dtype == np.float16 and z.attrs["ensemble"]["A"] == 25
    with pytest.raises(ValueError, match="probs shape"):
        labelstore.write_shard(g, 0, _probs(3, 2, 0))


def test_file_count_is_small(tmp_path):
    attrs, lay = _attrs(n=1000, v=2, shard=256, chunk=16)
    ids = [f"x{i}" for i in range(1000)]
    g = labelstore.create_layout(str(tmp_path / "s.zarr"), attrs, ids, np.arange(1000), views_array(ids, 2, 0))
    for k in range(lay.n_shards):
        a, b = lay.shard_range(k)
        labelstore.write_shard(g, k, _probs(b - a, 2, k))
    files = [p for p in (tmp_path / "s.zarr").rglob("*") if p.is_file()]
    assert len(files) == 6 + 4 + 4 + 3  # metadata, probs shards, done flags, views/row/sample_id


def test_provenance_diff_names_fields():
    a, _ = _attrs()
    b, _ = _attrs(p=4)
    diffs = diff_attrs(a, b)
    assert len(diffs) == 2 and diffs[0].startswith("ensemble.A") and any(d.startswith("ensemble.p (2 vs 4)") for d in diffs)
    assert diff_attrs(a, _attrs()[0]) == []  # created/package do not count


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        labelstore.open_store(str(tmp_path / "missing.zarr"))
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(ValueError, match="not a complete hpekd teacher-label store"):
        labelstore.open_store(str(tmp_path / "plain.zarr"))
    with pytest.raises(ValueError, match="multiple of chunk_rows"):
        labelstore.Layout(10, 1, 198, 5, 2)


@pytest.mark.parametrize("encoding", ["float16", "uint8", "top16"])
def test_every_array_reads_the_same_in_tensorstore(tmp_path, encoding):
    """Any Zarr v3 client reads the store: tensorstore (zarr3 driver) gets every array
    bit-equal to zarr-python, sample ids included (uint8, UTF-8, zero-padded), and the decode
    documented in the store's ``encoding`` attribute, applied by hand to the raw arrays, gives
    what hpekd's reader gives."""
    ts = pytest.importorskip("tensorstore")
    import numpy as np

    attrs, lay = _attrs(n=6, v=2, shard=4, chunk=2, encoding=encoding)
    ids = [f"ds/img_{i}.jpg#0" for i in range(6)]
    ids[3] = "ds/ünïcode_é.jpg#1"
    views = np.random.default_rng(0).random((6, 2, 2)).astype(np.float32)
    path = str(tmp_path / "s.zarr")
    g = labelstore.create_layout(path, attrs, ids, np.arange(6, dtype=np.int64) * 2, views)
    probs = np.random.default_rng(1).dirichlet(np.ones(198), size=(6, 2, 3)).astype(np.float16)
    for k in range(lay.n_shards):
        a, b = lay.shard_range(k)
        labelstore.write_shard(g, k, probs[a:b])
    enc = labelstore.encoding_of(g)
    raw_arrays = {}
    for name in [a.name for a in enc.arrays()] + ["views", "sample_id", "boxes_row", "done"]:
        arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{path}/{name}"}}).result()
        raw_arrays[name] = arr.read().result()
        np.testing.assert_array_equal(raw_arrays[name], np.asarray(g[name][:]), err_msg=name)
    raw = raw_arrays["sample_id"]
    assert [bytes(r).rstrip(b"\0").decode() for r in raw] == ids == list(load_teacher_labels(path).sample_ids)
    # the decode paragraph of docs/design.md §6, by hand
    if encoding == "float16":
        by_hand = raw_arrays["probs"].astype(np.float32)
    elif encoding == "uint8":
        q = raw_arrays["probs_uint8"].astype(np.float32)
        by_hand = q / q.sum(-1, keepdims=True)
    else:
        values = raw_arrays["topk_values"].astype(np.float32)
        by_hand = np.zeros((6, 2, 3, 198), np.float32)
        np.put_along_axis(by_hand, raw_arrays["topk_bins"].astype(np.int64), values / values.sum(-1, keepdims=True), -1)
    np.testing.assert_allclose(load_teacher_labels(path).probs(), by_hand, rtol=1e-6, atol=1e-7)
    assert g.attrs["encoding"]["name"] == encoding
