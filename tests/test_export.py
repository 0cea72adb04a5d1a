"""ONNX export round trip: the exported graph gives the torch model's angles."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.inference.export import export_onnx
from pipeline.model.checkpoint import model_from_checkpoint
from stages.export_onnx import cli as export_cli
from tests.helpers.predict import make_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "teacher.pt", kind="stage1",
                           bin_sizes=(2, 1), regression=True, size=(32, 40))


def test_onnx_round_trip_dynamic_batch(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    rep = export_onnx(ckpt, out)
    assert rep.checked and rep.max_abs_diff_angles < 1e-3 and rep.input_size == (32, 40) and rep.bins == 198
    model, _ = model_from_checkpoint(ckpt)
    model.eval()
    x = torch.randn(5, 3, 32, 40, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = model.predict(x).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    angles, probs = sess.run(None, {"input": x.numpy()})
    assert angles.shape == (5, 3) and probs.shape == (5, 3, 198)
    # float32 sums in another order (ONNX Runtime vs torch kernels): on an AVX2-only CPU the
    # random network's ~50 deg outputs differ by up to 1.1e-3 deg, i.e. 2e-5 relative
    np.testing.assert_allclose(angles, want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["hpekd.input_size"] == "[32, 40]" and meta["hpekd.head"] == "bin1" and meta["hpekd.kind"] == "stage1"
    assert not list(tmp_path.glob(".m.onnx*"))  # no temporary left behind


def test_export_cli_and_errors(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    res = runner.invoke(export_cli, [str(ckpt), str(tmp_path / "c.onnx"), "--no-check"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "c.onnx").is_file()
    res = runner.invoke(export_cli, [str(tmp_path / "missing.pt"), str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and "not found" in res.output
    torch.save({"kind": "weird"}, tmp_path / "weird.pt")
    res = runner.invoke(export_cli, [str(tmp_path / "weird.pt"), str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and "not an hpekd checkpoint" in res.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    res = runner.invoke(export_cli, [str(ckpt), str(tmp_path / "y.onnx")])
    assert res.exit_code == 1 and "hpekd[onnx]" in res.output and not (tmp_path / "y.onnx").exists()
    res = runner.invoke(export_cli, ["--help"])
    assert res.exit_code == 0 and "Examples" in res.output
