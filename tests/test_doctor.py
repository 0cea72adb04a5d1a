"""`hpekd doctor`: each library's pinned state, the kernel it picked, versions against constraints.txt."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pipeline.core import kernels, numerics
from stages.cli import main


def test_doctor_names_every_library_its_kernel_and_versions(tmp_path: Path) -> None:
    pins = tmp_path / "constraints.txt"
    pins.write_text("# a comment\nnumpy==0.0.1\ntorch==2.13.0,!=2.13.0+cpu\n")
    res = CliRunner().invoke(main, ["doctor", "--constraints", str(pins)])
    assert res.exit_code == 0, res.output
    for name in kernels.VARIABLES:
        assert f"\n{name}: " in res.output
    if numerics.mode() == "pinned":
        core = numerics.preset().get("OPENBLAS_CORETYPE")
        who = f"OPENBLAS_CORETYPE={core} (set by the environment" if core else "OPENBLAS_CORETYPE=Haswell (pinned)"
        assert who in res.output
        assert "kernel: AVX2, 2 threads" in res.output or f"kernel: AVX2, {numerics.threads()} threads" in res.output
    assert "libscipy_openblas" in res.output  # the OpenBLAS numpy loaded, with its core name
    table = {ln.split()[0]: ln for ln in res.output.split("\nversions (", 1)[1].splitlines()[1:]}
    assert "0.0.1" in table["numpy"] and "<- differs" in table["numpy"]
    assert "not pinned" in table["scipy"] and "<- differs" not in table["torch"]


def test_setting_says_who_set_it(monkeypatch) -> None:
    monkeypatch.setattr(numerics, "_preset", {"OPENBLAS_CORETYPE": "SkylakeX"})
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    monkeypatch.delenv(numerics.SWITCH, raising=False)
    assert kernels.setting("OPENBLAS_CORETYPE") == ("OPENBLAS_CORETYPE=SkylakeX (set by the environment; "
                                                   "contradicts the pin Haswell)")
    monkeypatch.setattr(numerics, "_preset", {})
    assert kernels.setting("OPENBLAS_CORETYPE") == "OPENBLAS_CORETYPE=SkylakeX (pinned)"


def test_constraints_parsing(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("Opencv_Python.Headless==5.1.0.95\n# x==1\ndvc-data==3.18.3 ; python_version>'3'\n")
    assert kernels.constraints(path) == {"opencv-python-headless": "5.1.0.95", "dvc-data": "3.18.3"}
