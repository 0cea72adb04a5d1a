"""Label-store encodings (float16, uint8, topK): encode → decode round trips, the stated error
bounds, bad settings, stores in each encoding end to end (teacher job, verify, info, student)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import make_tiny_dataset

from pipeline.core.bins import BinGrid
from pipeline.core.config import default_config
from pipeline.teacher import labelread, labelstore
from pipeline.teacher.encoding import Encoding, encoding_from_attrs
from pipeline.teacher.labelread import load_teacher_labels
from pipeline.training.outputs import RunPaths
from pipeline.training.stage2 import StudentConfig, train_student
from pipeline.training.targets import StoreTargets, TeacherTable
from stages.cli import main
from tests.helpers.student import make_oracle_store, oracle_probs

Q = 198
SIZE = 48


def _distributions(seed: int = 0) -> np.ndarray:
    """[40, 2, 3, Q] float16: narrow and wide Gaussians (as a teacher gives) and flat Dirichlet draws."""
    rng = np.random.default_rng(seed)
    peaked = oracle_probs(rng.uniform(-95, 95, size=(20, 2, 3)), BinGrid(1), sigma=float(rng.uniform(1.5, 12)))
    flat = rng.dirichlet(np.ones(Q), size=(20, 2, 3))
    return np.concatenate([peaked, flat]).astype(np.float16)


@pytest.mark.parametrize("name", ["float16", "uint8", "top8", "top16", "top32"])
def test_round_trip_sums_to_one_numpy_and_torch(name: str) -> None:
    enc = Encoding(name, Q)
    probs = _distributions()
    parts = enc.encode(probs)
    assert [a.name for a in enc.arrays()] == list(parts)
    for a in enc.arrays():
        assert parts[a.name].dtype == np.dtype(a.dtype) and parts[a.name].shape == (*probs.shape[:-1], a.last)
    dec = enc.decode(parts)
    assert dec.shape == probs.shape and dec.dtype == np.float32
    np.testing.assert_allclose(dec.sum(-1), 1.0, atol=2e-3 if name == "float16" else 1e-5)
    assert enc.value_problem(parts) is None
    tdec = enc.decode_torch({k: torch.from_numpy(v) for k, v in parts.items()}).float().numpy()
    np.testing.assert_allclose(tdec, dec, rtol=1e-6, atol=1e-8)
    # bytes per image-view: 3 angles of each array
    assert enc.bytes_per_view() == {"float16": 1188, "uint8": 594, "top8": 72, "top16": 144, "top32": 288}[name]


@pytest.mark.parametrize("k", [8, 16, 32])
def test_top_k_keeps_the_k_largest_exactly(k: int) -> None:
    """The K kept bins are the K largest float16 values, stored exactly; the decoded
    distribution is those values renormalised (the rest of the mass dropped), zero elsewhere."""
    enc = Encoding(f"top{k}", Q)
    probs = _distributions(1)
    parts = enc.encode(probs)
    bins = parts["topk_bins"].astype(np.int64)
    kept = np.take_along_axis(probs, bins, -1)
    np.testing.assert_array_equal(parts["topk_values"], kept)  # exactly the stored float16 values
    kth = np.sort(probs.astype(np.float32), -1)[..., -k]
    assert (kept.astype(np.float32).min(-1) >= kth).all()  # no bin left out is larger than a kept one
    dec = enc.decode(parts)
    np.testing.assert_allclose(np.take_along_axis(dec, bins, -1) * kept.astype(np.float32).sum(-1, keepdims=True),
                               kept.astype(np.float32), rtol=1e-6)
    assert ((dec > 0).sum(-1) <= k).all()


def test_uint8_error_is_within_the_stated_bound() -> None:
    """Before renormalisation every bin is within peak/510 of the truth (rounding of 255·p/peak);
    after it, the L1 distance to the float16 distribution stays under 2 % on teacher-like
    (Gaussian) distributions and under Q·peak/255 on any."""
    enc = Encoding("uint8", Q)
    probs = _distributions(2).astype(np.float32)
    q = enc.encode(probs)["probs_uint8"].astype(np.float32)
    peak = probs.max(-1, keepdims=True)
    assert (np.abs(q / 255 * peak - probs) <= peak / 510 + 1e-7).all()
    l1 = np.abs(enc.decode({"probs_uint8": q.astype(np.uint8)}) - probs).sum(-1)
    assert (l1[:20] < 0.02).all()
    assert (l1 <= Q * peak[..., 0] / 255).all()


@pytest.mark.parametrize("name,match", [
    ("float8", "unknown label encoding 'float8'"),
    ("top0", r"K must be an integer 1\.\.Q=198"),
    ("top199", r"K must be an integer 1\.\.Q=198"),
    ("top08", r"K must be an integer"),
    ("topk", "unknown label encoding"),
])
def test_bad_encoding_named(name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Encoding(name, Q)


def test_bad_encoding_in_params_refused_before_anything_runs(tmp_path: Path) -> None:
    from pipeline.teacher.job import TeacherLabelsConfig

    with pytest.raises(ValueError, match="unknown label encoding 'int4'"):
        default_config(TeacherLabelsConfig, "teacher_labels", encoding="int4")
    with pytest.raises(ValueError, match="K must be"):
        default_config(TeacherLabelsConfig, "teacher_labels", encoding="top0")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("enc"), n_train=24, n_test=8, size=SIZE, seed=5)


def test_store_with_an_unknown_encoding_is_refused_naming_it_and_the_writer(tiny: Path, tmp_path: Path) -> None:
    store = make_oracle_store(tiny, tmp_path / "s.zarr", size=SIZE, n_views=2)
    g = zarr.open_group(str(store), mode="r+")
    attrs = dict(g.attrs)
    attrs["encoding"] = {**attrs["encoding"], "name": "fp4"}
    attrs["package"] = {"name": "hpekd", "version": "9.9.0"}
    g.attrs.update(attrs)
    with pytest.raises(ValueError, match=r"encoding 'fp4' \(written by hpekd 9\.9\.0\).*cannot decode"):
        load_teacher_labels(store)
    res = CliRunner().invoke(main, ["labels", "verify", str(store)])
    assert res.exit_code != 0 and "fp4" in res.output and "Traceback" not in res.output
    with pytest.raises(ValueError, match="fp4"):
        encoding_from_attrs(attrs, "x")


@pytest.mark.parametrize("name", ["uint8", "top16"])
def test_compact_store_verifies_reads_and_trains_one_epoch(tiny: Path, tmp_path: Path, name: str) -> None:
    """A store in a compact encoding: `labels verify` OK, `labels info` names the encoding and
    its bytes, the student's soft targets are the decoded distributions, and one epoch trains."""
    ref = make_oracle_store(tiny, tmp_path / "ref.zarr", size=SIZE, n_views=2)
    store = make_oracle_store(tiny, tmp_path / f"{name}.zarr", size=SIZE, n_views=2, encoding=name)
    assert labelread.verify(str(store), str(tiny)) == []
    runner = CliRunner()
    info = runner.invoke(main, ["labels", "info", str(store)])
    bpv = Encoding(name, Q).bytes_per_view()
    assert info.exit_code == 0 and f"encoding   {name}: {bpv} B per image-view raw" in info.output
    rec = labelread.info(str(store))
    assert rec["encoding"] == name and 0 < rec["label_bytes"] < labelread.info(str(ref))["label_bytes"]

    labels, dense = load_teacher_labels(store), load_teacher_labels(str(ref)).probs()
    pos, views = np.arange(3), np.array([0, 1, 1])
    want = labels.targets(pos, views)
    # close to the float16 store's distributions (Gaussians of σ = 3 bins: 16 bins hold > 99 %)
    assert (np.abs(want - dense[pos, views]).sum(-1) < 0.02).all()
    table = TeacherTable(labels, len(labels.rows) + 100)
    got = table(torch.from_numpy(labels.rows[:3]), torch.from_numpy(views), torch.device("cpu"))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert labels.nbytes < load_teacher_labels(ref).nbytes  # compact in RAM as well

    cfg = default_config(StudentConfig, "train_student", input_size=SIZE, batch_size=8, epochs=1, workers=0, device="cpu", photometric=False)
    res = train_student(cfg, StoreTargets(str(store)), tiny, RunPaths(tmp_path / "s.pt", tmp_path / "m.json"), progress=False)
    assert math.isfinite(res["final"]["loss"]) and res["final"]["kl"] > 0


def test_resume_on_a_store_with_another_encoding_is_refused(tiny: Path, tmp_path: Path) -> None:
    """A student never continues on soft targets other than the ones it began with."""
    a = make_oracle_store(tiny, tmp_path / "a.zarr", size=SIZE, n_views=2)
    b = make_oracle_store(tiny, tmp_path / "b.zarr", size=SIZE, n_views=2, encoding="top8")
    cfg = default_config(StudentConfig, "train_student", input_size=SIZE, batch_size=8, epochs=2, workers=0, device="cpu", photometric=False)
    paths = RunPaths(tmp_path / "s.pt", tmp_path / "m.json")
    one = default_config(StudentConfig, "train_student", input_size=SIZE, batch_size=8, epochs=1, workers=0, device="cpu", photometric=False)
    train_student(one, StoreTargets(str(a)), tiny, paths, progress=False)
    with pytest.raises(ValueError, match=r"cannot resume .*other soft labels \(encoding"):
        train_student(cfg, StoreTargets(str(b)), tiny, paths, resume=True, progress=False)
    res = train_student(cfg, StoreTargets(str(a)), tiny, paths, resume=True, progress=False)  # the same store: continues
    assert res["final"]["epoch"] == 2


def test_convert_cli_views_and_encoding(tiny: Path, tmp_path: Path) -> None:
    """`hpekd labels convert`: the first V views in another encoding, a store that verifies
    against the boxes table and decodes to the source's distributions (within the encoding)."""
    src = make_oracle_store(tiny, tmp_path / "src.zarr", size=SIZE, n_views=3)
    dst = tmp_path / "dst.zarr"
    runner = CliRunner()
    res = runner.invoke(main, ["labels", "convert", str(src), "--out", str(dst), "--encoding", "top16", "--views", "2"])
    assert res.exit_code == 0, res.output
    assert labelread.verify(str(dst), str(tiny)) == []
    got, want = load_teacher_labels(str(dst)).probs(), load_teacher_labels(str(src)).probs()[:, :2]
    assert got.shape == want.shape and (np.abs(got - want).sum(-1) < 0.02).all()
    a = labelstore.open_store(str(dst)).attrs
    assert a["views"]["V"] == 2 and a["encoding"]["name"] == "top16" and a["layout"]["n_views"] == 2
    same = tmp_path / "same.zarr"
    assert runner.invoke(main, ["labels", "convert", str(src), "--out", str(same)]).exit_code == 0
    np.testing.assert_array_equal(zarr.open_group(str(same))["probs"][:], zarr.open_group(str(src))["probs"][:])
    for args, msg in ((["--views", "4"], "has 3 view"), (["--encoding", "top999"], "K must be"),
                      (["--out", str(src)], "same store")):
        bad = runner.invoke(main, ["labels", "convert", str(src), "--out", str(tmp_path / "x.zarr"), *args])
        assert bad.exit_code != 0 and msg in bad.output and "Traceback" not in bad.output
