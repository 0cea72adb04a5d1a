"""`hpekd import-weights --format kd_oe_hpe`: the paper's released models as hpekd checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

from pipeline.core.geometry import crop
from pipeline.core.images import normalize
from pipeline.model.checkpoint import model_from_checkpoint
from pipeline.model.import_weights import import_weights, student_model
from pipeline.model.network import LABEL_HEAD
from stages.cli import main
from tests.conftest import draw_tiny_face, make_tiny_dataset
from tests.helpers.kd_oe_hpe import KdOeHpeNetwork, export_kd_oe_hpe, their_angles
from tests.helpers.params import write_params


def _theirs(backbone: str = "resnet18", seed: int = 0) -> KdOeHpeNetwork:
    torch.manual_seed(seed)
    net = KdOeHpeNetwork(backbone).eval()
    with torch.no_grad():  # sharper distributions than random init gives, so the comparison means something
        for lin in (net.head_net.pitch, net.head_net.yaw, net.head_net.roll):
            lin.weight.mul_(30.0)
            lin.bias.normal_(0.0, 1.0)
        for m in net.modules():  # non-trivial BatchNorm statistics (eval mode uses them)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def _import(tmp_path: Path, state: dict, backbone: str = "resnet18") -> tuple[CliRunner, object]:
    pth = tmp_path / f"{backbone}.pth"
    torch.save(state, pth)
    out = tmp_path / "models" / f"kd_{backbone}.pt"
    return CliRunner().invoke(main, ["import-weights", "--format", "kd_oe_hpe", str(pth), "--backbone", backbone,
                                     "--out", str(out)]), out


def test_imported_network_gives_their_distributions_with_pitch_mirrored(tmp_path: Path) -> None:
    theirs = _theirs()
    res, out = _import(tmp_path, theirs.state_dict())
    assert res.exit_code == 0, res.output
    assert "student resnet18, one RvC head of 198 bins, input 224x224" in res.output
    model, state = model_from_checkpoint(out)
    assert state["kind"] == "student" and state["input_size"] == [224, 224]
    assert list(model.heads) == [LABEL_HEAD] and model.reg is None
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = torch.softmax(theirs(x), -1)                 # [3, B, 198]
        got = torch.softmax(model.eval()(x)[LABEL_HEAD], -1)  # [B, 3, 198]
        ours = model.predict(x).numpy()
    assert ref.max() > 0.05  # not flat
    torch.testing.assert_close(got[:, 0], ref[0].flip(-1), atol=1e-5, rtol=1e-4)  # pitch bins mirrored
    torch.testing.assert_close(got[:, 1], ref[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[:, 2], ref[2], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(ours, their_angles(theirs(x).detach()) * [-1, 1, 1], atol=1e-3)


def test_model_made_here_round_trips_through_their_layout(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = student_model("resnet18").eval()
    with torch.no_grad():
        model.heads[LABEL_HEAD].weight.mul_(30.0)
    pth = tmp_path / "theirs.pth"
    torch.save(export_kd_oe_hpe(model), pth)
    # their network loads the exported state dict strictly, as their main.py does
    KdOeHpeNetwork("resnet18").load_state_dict(torch.load(pth, weights_only=True))
    import_weights(pth, "resnet18", tmp_path / "back.pt")
    back, _ = model_from_checkpoint(tmp_path / "back.pt")
    img, box = draw_tiny_face(96, (10.0, 40.0, -5.0), np.random.default_rng(0))  # a synthetic face
    x = normalize(torch.from_numpy(crop(img, box, (224, 224)).transpose(2, 0, 1).copy())[None])
    with torch.no_grad():
        a, b = model.predict(x), back.eval().predict(x)
    assert a.abs().max() > 1.0
    torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


def test_evaluate_and_teacher_labels_run_on_an_imported_model(tmp_path: Path) -> None:
    res, ck = _import(tmp_path, _theirs().state_dict())
    assert res.exit_code == 0, res.output
    boxes = make_tiny_dataset(tmp_path / "data", n_train=3, n_test=4, size=64)
    params = write_params(tmp_path / "params.yaml", {
        "evaluate": {"batch_size": 4, "workers": 0, "device": "cpu", "grid_faces": 2, "grid_size": 64},
        "teacher_labels": {"p": 0, "s": 1, "views": 2, "shard_rows": 4, "chunk_rows": 2, "batch_size": 2,
                           "loader_workers": 0, "device": "cpu", "encoding": "float16"}})  # probs read as stored
    runner = CliRunner()
    metrics = tmp_path / "metrics" / "kd-resnet18.json"
    r = runner.invoke(main, ["evaluate", "--model", str(ck), "--boxes", str(boxes), "--metrics", str(metrics),
                             "--params", str(params)])
    assert r.exit_code == 0, r.output
    m = json.loads(metrics.read_text())
    assert m["kind"] == "student" and m["backbone"] == "resnet18"
    assert m["all"]["n"] == 4 and np.isfinite(m["all"]["mae_mean"])
    r = runner.invoke(main, ["teacher-labels", "--model", str(ck), "--boxes", str(boxes), "--out",
                             str(tmp_path / "labels.zarr"), "--params", str(params)])
    assert r.exit_code == 0, r.output
    import zarr

    probs = zarr.open_group(str(tmp_path / "labels.zarr"), mode="r")["probs"][:]
    assert probs.shape == (3, 2, 3, 198) and np.allclose(probs.astype(np.float32).sum(-1), 1.0, atol=2e-2)


def test_bad_weights_are_one_line_errors(tmp_path: Path) -> None:
    # a torchvision ResNet state dict: neither layout
    res, _ = _import(tmp_path, torchvision.models.resnet18(weights=None).state_dict())
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0
    assert "is not a kd_oe_hpe resnet18 state dict: missing 106 key(s) ['encoder_net.model.conv1.weight'" in res.output
    assert "unexpected 122 key(s) ['conv1.weight'" in res.output
    assert "expected the kd_oe_hpe layout (AndreySheka/kd_oe_hpe src/model.py): encoder_net.model.<torchvision resnet18" in res.output
    # the right layout, another backbone
    (tmp_path / "r34").mkdir()
    res, _ = _import(tmp_path / "r34", _theirs("resnet18").state_dict(), backbone="resnet34")
    assert res.exit_code == 1 and "is not a kd_oe_hpe resnet34 state dict: missing" in res.output
    assert "it looks like a kd_oe_hpe resnet18: pass --backbone resnet18" in res.output
    (tmp_path / "r50").mkdir()
    res, _ = _import(tmp_path / "r50", _theirs("resnet18").state_dict(), backbone="resnet50")
    assert res.exit_code == 1 and "is not a kd_oe_hpe resnet50 state dict" in res.output
    assert "Linear(2048, 198)" in res.output and "Traceback" not in res.output
    # not a state dict at all; an hpekd checkpoint; a missing file
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    r = CliRunner().invoke(main, ["import-weights", str(tmp_path / "junk.pth"), "--backbone", "resnet18", "--out",
                                  str(tmp_path / "x.pt")])
    assert r.exit_code == 1 and "junk.pth' is not a readable weights file" in r.output
    _, ck = _import(tmp_path, _theirs().state_dict())
    r = CliRunner().invoke(main, ["import-weights", str(ck), "--backbone", "resnet18", "--out", str(tmp_path / "y.pt")])
    assert r.exit_code == 1 and "is already an hpekd checkpoint" in r.output
    with pytest.raises(ValueError, match=r"weights file '.*nothing\.pth' not found"):
        import_weights(tmp_path / "nothing.pth", "resnet18", tmp_path / "z.pt")
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_wrapped_and_dataparallel_state_dicts(tmp_path: Path) -> None:
    state = {"module." + k: v for k, v in _theirs().state_dict().items()}
    torch.save({"state_dict": state, "epoch": 100}, tmp_path / "w.pth")
    rep = import_weights(tmp_path / "w.pth", "resnet18", tmp_path / "w.pt")
    assert rep.input_size == (224, 224) and len(rep.source_sha256) == 64
