"""The online teacher (``hpekd train-student --online-teacher``): the ensemble it runs on the
student's own view equals the teacher job's for that view; bad teachers are refused in one
line; a short run trains, records its teacher passes, resumes, and refuses an offline resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_tiny_dataset
from torch.utils.data import default_collate

from pipeline.core.config import config_from_mapping, default_config
from pipeline.core.views import view_from_row
from pipeline.manifest.schema import read_boxes
from pipeline.model.checkpoint import load_checkpoint
from pipeline.teacher.job import TeacherLabelsConfig, run_teacher_labels
from pipeline.teacher.labelread import load_teacher_labels
from pipeline.teacher.provenance import Requirements
from pipeline.training.online import OnlineTargets, OnlineTeacher
from pipeline.training.outputs import RunPaths
from pipeline.training.runtime import Runtime, prepare_batch
from pipeline.training.stage2 import StudentConfig, student_dataset, student_fns, train_student
from pipeline.training.targets import StoreTargets, student_bins
from stages.cli import main
from tests.helpers.params import full_params, write_params
from tests.helpers.teacher import make_teacher_checkpoint

SIZE = 32
# float16: the comparison with the online ensemble is at float16's tolerance, not uint8's
TL = dict(p=2, s=2, views=3, view_seed=7, encoding="float16", shard_rows=4, chunk_rows=2, batch_size=2, chunk=64,
          loader_workers=0, threads=1, device="cpu")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("online")
    boxes = make_tiny_dataset(root, n_train=12, n_test=6, size=64, seed=4)
    ck = make_teacher_checkpoint(root / "teacher.pt", size=SIZE)
    cfg = config_from_mapping(TeacherLabelsConfig, full_params({"teacher_labels": TL})["teacher_labels"], "test",
                              require_all=True)
    store = root / "labels.zarr"
    assert run_teacher_labels(cfg, str(ck), str(boxes), str(store)).complete
    return {"root": root, "boxes": boxes, "ck": ck, "store": store}


def _teacher(env, **kw) -> OnlineTeacher:
    recipe = config_from_mapping(TeacherLabelsConfig, full_params({"teacher_labels": {**TL, **kw}})["teacher_labels"],
                                 "test", require_all=True)
    return OnlineTeacher.from_config(str(env["ck"]), recipe)


def _plan(env, teacher: OnlineTeacher, cfg: StudentConfig, ck=None):
    targets = OnlineTargets(teacher if ck is None else OnlineTeacher(str(ck), teacher.recipe))
    plan = targets.plan(read_boxes(env["boxes"]), env["boxes"], Requirements(student_bins(cfg.spec()), cfg.size), 0)
    return targets, plan


def _cfg(**kw) -> StudentConfig:
    base = dict(input_size=None, batch_size=6, epochs=1, workers=0, device="cpu", photometric=False, lr=1e-3)
    return default_config(StudentConfig, "train_student", **{**base, **kw})


def test_online_ensemble_equals_the_teacher_job_for_the_same_view(env, monkeypatch) -> None:
    """Build the online student's batch for the views the job stored, run the online loss, and
    catch the soft target it hands to eq. 7: it is the store's distribution of that view (the
    store keeps float16, hence the tolerance)."""
    teacher = _teacher(env)
    cfg = _cfg()
    targets, plan = _plan(env, teacher, cfg)
    ds = student_dataset(read_boxes(env["boxes"]), plan, cfg, targets)
    labels_views = load_teacher_labels(str(env["store"])).views
    rows = load_teacher_labels(str(env["store"])).rows
    stored = load_teacher_labels(str(env["store"])).probs()
    picks = [(pos, v) for pos in range(len(rows)) for v in range(labels_views.shape[1])][::2]
    items = []
    for pos, v in picks:
        i = int(np.flatnonzero(ds.rows == rows[pos])[0])
        ds.view_fn = lambda row, rng, _v=view_from_row(labels_views[pos, v]): _v  # the stored view
        items.append(ds[(0, i)])
    batch = prepare_batch(default_collate(items), Runtime(torch.device("cpu")))
    seen = {}

    def catch(logits, target, teacher_probs, *a, **k):
        seen["t"] = teacher_probs
        return logits.sum(), {}

    import pipeline.training.stage2 as stage2

    monkeypatch.setattr(stage2, "student_loss", catch)
    loss_fn, _ = student_fns(cfg.spec(), plan.make_target(Runtime(torch.device("cpu"))), cfg.ce_weight, cfg.kd_weight)
    loss_fn({"bin1": torch.zeros(len(items), 3, 198)}, batch)
    want = np.stack([stored[pos, v] for pos, v in picks])
    np.testing.assert_allclose(seen["t"].numpy(), want, rtol=1e-3, atol=1e-6)  # float16: 2^-11 relative
    # and the student's image is the center crop of that region Z
    p = teacher.recipe.p
    np.testing.assert_array_equal(items[0]["image"].numpy().transpose(1, 2, 0),
                                  items[0]["z"].numpy()[p : p + SIZE, p : p + SIZE])


def test_fresh_views_are_seeded_and_vary_by_epoch(env) -> None:
    targets, plan = _plan(env, _teacher(env), _cfg())
    ds = student_dataset(read_boxes(env["boxes"]), plan, _cfg(), targets)
    a = [(bool(ds[(0, i)]["flip"]), float(ds[(0, i)]["angle"])) for i in range(len(ds))]
    b = [(bool(ds[(0, i)]["flip"]), float(ds[(0, i)]["angle"])) for i in range(len(ds))]
    c = [(bool(ds[(1, i)]["flip"]), float(ds[(1, i)]["angle"])) for i in range(len(ds))]
    assert a == b and a != c
    assert all(float(np.float32(ang)) == ang for _, ang in a)  # float32 angles, as stored views


def test_bad_online_teacher_named(env, tmp_path: Path) -> None:
    state = load_checkpoint(env["ck"])
    with pytest.raises(ValueError, match=r"input\.size differs \(teacher \[32, 32\], here \[48, 48\]\)"):
        _plan(env, _teacher(env), _cfg(input_size=48))

    def variant(name: str, **spec) -> Path:
        torch.save(dict(state, model_spec={**state["model_spec"], **spec}), tmp_path / name)
        return tmp_path / name

    with pytest.raises(ValueError, match="has no bin-1 head"):
        _plan(env, _teacher(env), _cfg(), ck=variant("nobin1.pt", bin_sizes=[3]))
    with pytest.raises(ValueError, match=r"bins\.theta differs \(teacher 90\.0, here 99"):
        _plan(env, _teacher(env), _cfg(), ck=variant("wide.pt", theta=90.0))
    with pytest.raises(ValueError, match="multiple of the stride"):
        _teacher(env, p=3, s=2)


def test_online_student_trains_resumes_and_refuses_offline_resume(env, tmp_path: Path) -> None:
    targets = OnlineTargets(_teacher(env))
    paths = RunPaths(tmp_path / "s.pt", tmp_path / "m.json")
    res = train_student(_cfg(), targets, env["boxes"], paths, progress=False)
    assert math.isfinite(res["final"]["loss"]) and res["final"]["kl"] > 0
    metrics = json.loads(Path(paths.metrics).read_text())
    assert metrics["teacher"] == {"mode": "online", "encoding": None, "views": None, "network_passes": 12 * 9}
    res2 = train_student(_cfg(epochs=2), targets, env["boxes"], paths, resume=True, progress=False)
    assert res2["final"]["epoch"] == 2
    with pytest.raises(ValueError, match="cannot resume .* other soft labels"):
        train_student(_cfg(epochs=3), StoreTargets(str(env["store"])), env["boxes"], paths, resume=True, progress=False)


def test_cli_online_teacher(env, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"teacher_labels": TL, "train_student": {
        "batch_size": 6, "epochs": 1, "workers": 0, "device": "cpu", "photometric": False}})
    out = tmp_path / "s.pt"
    res = CliRunner().invoke(main, ["train-student", "--online-teacher", str(env["ck"]), "--boxes", str(env["boxes"]),
                                    "--out", str(out), "--params", str(params), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out)["labels"]["provenance"]["views"]["online"] is True
    bad = CliRunner().invoke(main, ["train-student", "--online-teacher", str(tmp_path / "none.pt"), "--boxes",
                                    str(env["boxes"]), "--out", str(tmp_path / "x.pt"), "--params", str(params)])
    assert bad.exit_code != 0 and "none.pt" in bad.output and "Traceback" not in bad.output
