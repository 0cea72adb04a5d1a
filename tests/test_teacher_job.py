"""The teacher-label job: resumable, deterministic, distributed; `hpekd teacher-labels`,
`hpekd labels info|verify` and `hpekd ensemble-grid` through click's CliRunner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import make_tiny_dataset

from pipeline.core.config import config_from_mapping
from pipeline.core.geometry import crop
from pipeline.core.images import read_image
from pipeline.core.io import sha256_file
from pipeline.core.views import view_from_row
from pipeline.teacher import labelread, labelstore
from pipeline.teacher.ensemble import ensemble_probs
from pipeline.teacher.job import TeacherLabelsConfig, run_teacher_labels
from pipeline.teacher.labelread import load_teacher_labels
from stages.cli import main
from tests.helpers.params import full_params, write_params
from tests.helpers.teacher import make_teacher_checkpoint

REPO = Path(__file__).resolve().parents[1]
# float16: these tests read the store's `probs` array as it is (tests/test_encoding.py covers the others)
PARAMS = dict(p=2, s=2, views=2, view_seed=7, encoding="float16", shard_rows=2, chunk_rows=2, batch_size=2,
              chunk=64, loader_workers=0, threads=1, device="cpu")
N_TRAIN = 16


def _config(**changes) -> TeacherLabelsConfig:
    """The config the CLI reads from the test's params file (the default with PARAMS), changed."""
    values = {**full_params({"teacher_labels": PARAMS})["teacher_labels"], **changes}
    return config_from_mapping(TeacherLabelsConfig, values, "test teacher_labels", require_all=True)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    boxes = make_tiny_dataset(root, n_train=N_TRAIN, n_test=6, size=64, seed=3)
    ck = make_teacher_checkpoint(root / "teacher.pt", size=32)
    params = write_params(root / "params.yaml", {"teacher_labels": PARAMS, "ensemble_grid": {
        "p_max": 2, "s": [1, 2], "batch_size": 3, "chunk": 64, "loader_workers": 0, "device": "cpu"}})
    torch.set_num_threads(1)
    ref = root / "ref.zarr"
    res = run_teacher_labels(_config(), str(ck), str(boxes), str(ref))
    assert res.computed == list(range(N_TRAIN // 2)) and res.complete
    return dict(root=root, boxes=boxes, ck=ck, params=params, ref=ref)


def store_files(path: Path) -> dict[str, bytes]:
    """Every file of a store (metadata included: the store holds no timestamp)."""
    return {f.relative_to(path).as_posix(): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def root_attrs(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]


def test_store_content_and_provenance(env):
    g = labelstore.open_store(str(env["ref"]))
    probs = load_teacher_labels(str(env["ref"])).probs()
    assert probs.shape == (N_TRAIN, 2, 3, 198) and g["probs"].dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32).sum(-1), 1.0, atol=2e-3)
    a = dict(g.attrs)
    assert a["teacher"]["sha256"] == sha256_file(env["ck"]) and a["teacher"]["architecture"] == "resnet18"
    assert a["bins"] == {"b": 1, "theta": 99, "Q": 198}
    assert a["ensemble"] == {"p": 2, "s": 2, "A": 9}
    assert a["views"]["V"] == 2 and a["views"]["seed"] == 7
    assert a["manifest"]["sha256"] == sha256_file(env["boxes"])
    assert a["input"]["size"] == [32, 32] and "created" not in a and a["format_version"] == 3
    assert a["encoding"]["name"] == "float16" and a["encoding"]["bytes_per_image_view"] == 1188
    df = pd.read_parquet(env["boxes"])
    train = df[df.split == "train"]
    assert list(load_teacher_labels(str(env["ref"])).sample_ids) == train.sample_id.tolist()
    views = load_teacher_labels(str(env["ref"])).views
    assert (views[:, 0] == 0).all() and views.shape == (N_TRAIN, 2, 2)
    # file count stays small: 8 probs shards + 8 done flags + views/row/sample_id + metadata
    assert len(store_files(env["ref"])) < 30
    # row 5, view 1 equals the ensemble of its replayed view computed directly
    r = train.iloc[5]
    model = __import__("pipeline.model.checkpoint", fromlist=["x"]).model_from_checkpoint(str(env["ck"]))[0].eval()
    z = crop(read_image(f"{r.root}/{r.image_path}"), (r.x1, r.y1, r.x2, r.y2), (32, 32), pad=2,
             view=view_from_row(views[5, 1]))
    want = ensemble_probs(model, torch.from_numpy(z)[None], (32, 32), 2, 2)[0].numpy()
    np.testing.assert_allclose(probs[5, 1].astype(np.float32), want, atol=1e-3)


def test_rerun_skips_finished_shards(env, tmp_path):
    out = tmp_path / "copy.zarr"
    shutil.copytree(env["ref"], out)
    res = run_teacher_labels(_config(), str(env["ck"]), str(env["boxes"]), str(out))
    assert res.computed == [] and res.skipped == list(range(N_TRAIN // 2))
    assert store_files(out) == store_files(env["ref"])


def test_sigkill_then_resume_is_byte_identical(env, tmp_path):
    out = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "stages.cli", "teacher-labels", "--model", str(env["ck"]), "--boxes",
           str(env["boxes"]), "--out", str(out), "--workers", "0", "--params", str(env["params"])]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = out / "done" / "c" / "0" / "0"
    deadline = time.monotonic() + 120
    while not first.exists():
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {int(f.name) for f in (out / "done" / "c").iterdir() if (f / "0").is_file()}
    assert 0 < len(done_before) < N_TRAIN // 2, "the job finished before it could be killed"
    stamps = {k: (out / "probs" / "c" / str(k) / "0" / "0" / "0").stat().st_mtime_ns for k in done_before}
    res = run_teacher_labels(_config(), str(env["ck"]), str(env["boxes"]), str(out))
    assert set(res.computed) == set(range(N_TRAIN // 2)) - done_before  # nothing finished was redone
    assert res.skipped == sorted(done_before)
    for k, t in stamps.items():
        assert (out / "probs" / "c" / str(k) / "0" / "0" / "0").stat().st_mtime_ns == t
    assert store_files(out) == store_files(env["ref"])
    assert root_attrs(out) == root_attrs(env["ref"])


@pytest.mark.slow
def test_two_dask_workers_same_store_as_one(env, tmp_path):
    out = tmp_path / "dask2.zarr"
    r = CliRunner().invoke(main, ["teacher-labels", "--model", str(env["ck"]), "--boxes", str(env["boxes"]),
                                  "--out", str(out), "--workers", "2", "--params", str(env["params"])])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["computed"] == list(range(N_TRAIN // 2)) and summary["complete"]
    assert store_files(out) == store_files(env["ref"])
    assert root_attrs(out) == root_attrs(env["ref"])


def test_fsspec_memory_store(env):
    url = "memory://hpekd-test/labels.zarr"
    run_teacher_labels(_config(), str(env["ck"]), str(env["boxes"]), url)
    np.testing.assert_array_equal(load_teacher_labels(url).probs(), load_teacher_labels(str(env["ref"])).probs())
    assert labelread.verify(url, str(env["boxes"])) == []
    res = run_teacher_labels(_config(), str(env["ck"]), str(env["boxes"]), url)
    assert res.computed == []


def test_changed_params_rebuild_the_store(env, tmp_path):
    out = tmp_path / "c.zarr"
    shutil.copytree(env["ref"], out)
    res = run_teacher_labels(_config(view_seed=8), str(env["ck"]), str(env["boxes"]), str(out))
    assert res.computed == list(range(N_TRAIN // 2))
    assert labelstore.open_store(str(out)).attrs["views"]["seed"] == 8


def test_labels_info_and_verify_cli(env, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["labels", "info", str(env["ref"])])
    assert r.exit_code == 0, r.output
    assert "p=2 s=2 A=9" in r.output and "complete   yes" in r.output and sha256_file(env["ck"]) in r.output
    r = runner.invoke(main, ["labels", "info", "--json", str(env["ref"])])
    assert json.loads(r.output)["shards_done"] == N_TRAIN // 2
    r = runner.invoke(main, ["labels", "verify", str(env["ref"]), "--boxes", str(env["boxes"])])
    assert r.exit_code == 0 and "OK" in r.output

    # a corrupted shard file
    bad = tmp_path / "bad.zarr"
    shutil.copytree(env["ref"], bad)
    shard = bad / "probs" / "c" / "3" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[20:len(data) // 2] = np.random.default_rng(0).integers(0, 256, len(data) // 2 - 20, dtype=np.uint8).tobytes()
    shard.write_bytes(bytes(data))
    r = runner.invoke(main, ["labels", "verify", str(bad)])
    assert r.exit_code != 0 and "shard 3" in r.output

    # an unfinished shard
    unfinished = tmp_path / "unfinished.zarr"
    shutil.copytree(env["ref"], unfinished)
    (unfinished / "done" / "c" / "1" / "0").unlink()
    r = runner.invoke(main, ["labels", "verify", str(unfinished)])
    assert r.exit_code != 0 and "not done: [1]" in r.output
    with pytest.raises(ValueError, match="incomplete"):
        load_teacher_labels(str(unfinished)).probs()
    assert "NO" in runner.invoke(main, ["labels", "info", str(unfinished)]).output

    # a manifest that does not match
    df = pd.read_parquet(env["boxes"])
    df.loc[2, "status"], df.loc[2, "reason"] = "rejected", "test"
    other = tmp_path / "other.parquet"
    df.to_parquet(other, index=False)
    r = runner.invoke(main, ["labels", "verify", str(env["ref"]), "--boxes", str(other)])
    assert r.exit_code != 0 and "sha256" in r.output and "rows" in r.output

    r = runner.invoke(main, ["labels", "info", str(tmp_path / "nothing.zarr")])
    assert r.exit_code != 0 and "not found" in r.output


def test_teacher_labels_cli_errors(env, tmp_path):
    params = write_params(tmp_path / "params.yaml", {"teacher_labels": {**PARAMS, "p": 3}})
    r = CliRunner().invoke(main, ["teacher-labels", "--model", str(env["ck"]), "--boxes", str(env["boxes"]),
                                  "--out", str(tmp_path / "x.zarr"), "--params", str(params)])
    assert r.exit_code != 0 and "p=3 must be a multiple of the stride s=2" in r.output
    params.write_text(yaml.safe_dump({"teacher_labels": {**PARAMS, "shards": 3}}))  # as written: the unknown key is named
    r = CliRunner().invoke(main, ["teacher-labels", "--model", str(env["ck"]), "--boxes", str(env["boxes"]),
                                  "--out", str(tmp_path / "x.zarr"), "--params", str(params)])
    assert r.exit_code != 0 and "shards" in r.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    r = CliRunner().invoke(main, ["teacher-labels", "--model", str(env["ck"]), "--boxes", str(env["boxes"]),
                                  "--out", str(foreign), "--params", str(env["params"])])
    assert r.exit_code != 0 and "not an hpekd label store" in r.output and (foreign / "keep.txt").exists()


def test_ensemble_grid_cli(env, tmp_path):
    out = {k: tmp_path / f"grid.{k}" for k in ("json", "csv", "png")}
    r = CliRunner().invoke(main, ["ensemble-grid", "--model", str(env["ck"]), "--boxes", str(env["boxes"]),
                                  "--out-json", str(out["json"]), "--out-csv", str(out["csv"]),
                                  "--out-png", str(out["png"]), "--params", str(env["params"])])
    assert r.exit_code == 0, r.output
    data = json.loads(out["json"].read_text())
    combos = {(row["p"], row["s"], row["A"]) for row in data["rows"]}
    assert combos == {(0, 1, 1), (1, 1, 9), (2, 1, 25), (0, 2, 1), (2, 2, 9)}
    assert all(row["n"] == 6 for row in data["rows"])
    csv_rows = pd.read_csv(out["csv"])
    assert list(csv_rows.columns) == ["dataset", "p", "s", "A", "n", "mae_pitch", "mae_yaw", "mae_roll", "mae_mean"]
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
    # p = 0 is the single network with the same MAE in every stride row
    single = csv_rows[csv_rows.p == 0].mae_mean.to_numpy()
    assert np.allclose(single, single[0])


def test_existing_scheduler(env, tmp_path):
    from distributed import LocalCluster

    out = tmp_path / "sched.zarr"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        r = CliRunner().invoke(main, ["teacher-labels", "--model", str(env["ck"]), "--boxes", str(env["boxes"]),
                                      "--out", str(out), "--scheduler", cluster.scheduler_address,
                                      "--params", str(env["params"])])
    assert r.exit_code == 0, r.output
    assert store_files(out) == store_files(env["ref"])


# ----------------------------------------------------------------------------- integrity (docs/design.md §6)


def test_rerun_recomputes_only_a_damaged_shard(env, tmp_path):
    out = tmp_path / "damaged.zarr"
    shutil.copytree(env["ref"], out)
    shard = out / "probs" / "c" / "5" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-40:] = bytes(40)
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"shard 5 \(rows 10\.\.11\)"):
        load_teacher_labels(str(out)).probs()
    res = run_teacher_labels(_config(), str(env["ck"]), str(env["boxes"]), str(out))
    assert res.computed == [5]
    assert store_files(out) == store_files(env["ref"])


def _boxes_with(env, tmp_path, **change) -> Path:
    df = pd.read_parquet(env["boxes"])
    i = int(np.flatnonzero((df["split"] == "train").to_numpy())[3])
    for k, v in change.items():
        df.loc[i, k] = v
    out = tmp_path / "edited.parquet"
    df.to_parquet(out, index=False)
    return out


def test_box_outside_its_image_is_refused_before_writing(env, tmp_path):
    boxes = _boxes_with(env, tmp_path, x1=500.0, x2=540.0)  # the images are 64 px wide
    out = tmp_path / "outside.zarr"
    r = CliRunner().invoke(main, ["teacher-labels", "--model", str(env["ck"]), "--boxes", str(boxes),
                                  "--out", str(out), "--params", str(env["params"])])
    assert r.exit_code == 1 and "lies outside the 64x64 image" in r.output and "nothing was written" in r.output
    assert not out.exists()


def test_good_store_survives_a_rebuild_on_bad_input(env, tmp_path):
    """A different provenance plus a missing image: refused, and the old store is untouched."""
    out = tmp_path / "keep.zarr"
    shutil.copytree(env["ref"], out)
    before = store_files(out)
    df = pd.read_parquet(env["boxes"])
    img = Path(df.loc[df["split"] == "train", "root"].iloc[0]) / df.loc[df["split"] == "train", "image_path"].iloc[0]
    moved = img.with_suffix(".moved")
    img.rename(moved)
    try:
        cfg = _config(view_seed=9)
        with pytest.raises(ValueError, match="image not found"):
            run_teacher_labels(cfg, str(env["ck"]), str(env["boxes"]), str(out))
    finally:
        moved.rename(img)
    assert store_files(out) == before
    assert not (tmp_path / ".keep.zarr.next").exists() or not any((tmp_path / ".keep.zarr.next").iterdir())


def test_rebuild_keeps_the_old_store_until_the_new_one_is_complete(env, tmp_path, monkeypatch):
    from pipeline.teacher import job

    out = tmp_path / "swap.zarr"
    shutil.copytree(env["ref"], out)
    before = store_files(out)
    cfg = _config(view_seed=8)
    real = job.compute_shards
    calls = []

    def dies_after_one(task):  # a job killed after its first task
        calls.append(task.shards)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(job, "compute_shards", dies_after_one)
    monkeypatch.setattr(job, "group_shards", lambda pending, n: [[k] for k in pending])
    plan = job.plan_job(cfg, str(env["ck"]), str(env["boxes"]), str(out))
    assert plan.out == str(tmp_path / ".swap.zarr.next") and plan.final == str(out)
    assert store_files(out) == before  # planning wrote only beside the old store
    monkeypatch.setattr(job, "compute_shards", real)
    res = run_teacher_labels(cfg, str(env["ck"]), str(env["boxes"]), str(out))
    assert res.out == str(out) and res.complete
    assert labelstore.open_store(str(out)).attrs["views"]["seed"] == 8
    assert not (tmp_path / ".swap.zarr.next").exists() and not (tmp_path / ".swap.zarr.old").exists()
    assert labelread.verify(str(out), str(env["boxes"])) == []


def _start_job(env, out: Path, extra=()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "stages.cli", "teacher-labels", "--model", str(env["ck"]), "--boxes",
           str(env["boxes"]), "--out", str(out), "--workers", "0", "--params", str(env["params"]), *extra]
    return subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_one_writer_at_a_time(env, tmp_path):
    """A second process holding the store's lease: the job refuses naming it; once that
    process is killed (lease left behind) the job takes the stale lease over."""
    from pipeline.teacher.lease import lease_path

    out = tmp_path / "leased.zarr"
    lease = Path(lease_path(str(out)))
    code = ("import sys, time; from pipeline.teacher.lease import new_lease; "
            f"new_lease({str(out)!r}, 'p').acquire(); print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == b"held"
        job = _start_job(env, out)
        err = job.communicate(timeout=120)[1].decode()
        rec = json.loads(lease.read_text())
        assert job.returncode == 1, err
        assert f"pid {holder.pid}" in err and rec["job_id"] in err and "Traceback" not in err
        assert not (out / "zarr.json").exists()  # nothing written under someone else's lease
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert lease.exists()  # the dead holder's lease is still there
    job = _start_job(env, out)
    assert job.wait(timeout=300) == 0, job.communicate()[1].decode()[-2000:]
    assert not lease.exists() and store_files(out) == store_files(env["ref"])


def test_two_identical_jobs_started_together(env, tmp_path):
    out = tmp_path / "race.zarr"
    jobs = [_start_job(env, out) for _ in range(2)]
    results = [(j.wait(timeout=300), j.communicate()[1].decode()) for j in jobs]
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        assert "Traceback" not in err
        assert rc == 0 or (rc == 1 and "is being written by job" in err), err
    assert store_files(out) == store_files(env["ref"])
    assert labelread.verify(str(out), str(env["boxes"])) == []


def test_foreign_lease_needs_break_lease(env, tmp_path):
    from pipeline.teacher.lease import lease_path

    out = tmp_path / "foreign.zarr"
    shutil.copytree(env["ref"], out)
    lease = Path(lease_path(str(out)))
    lease.write_text(json.dumps({"job_id": "abc123", "host": "other-machine", "pid": 4242, "started": "then"}))
    args = ["teacher-labels", "--model", str(env["ck"]), "--boxes", str(env["boxes"]), "--out", str(out),
            "--params", str(env["params"])]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "job abc123 (host other-machine, pid 4242" in r.output and "--break-lease" in r.output
    r = CliRunner().invoke(main, [*args, "--break-lease"])
    assert r.exit_code == 0, r.output
    assert not lease.exists() and store_files(out) == store_files(env["ref"])


def test_shard_write_stops_when_the_lease_is_lost(env, tmp_path):
    from pipeline.teacher.lease import new_lease

    out = tmp_path / "lost.zarr"
    shutil.copytree(env["ref"], out)
    mine, other = new_lease(str(out), "x"), new_lease(str(out), "y")
    other.acquire()
    g = labelstore.open_store(str(out), "r+")
    block = load_teacher_labels(str(out)).probs()[:2]
    with pytest.raises(ValueError, match="no longer holds the lease"):
        labelstore.write_shard(g, 0, block, lease=mine)
    other.release()
