"""Byte reproducibility on CPU (docs/design.md §10): the same inputs and params give the same bytes.

A tiny pipeline (stage 1, evaluation with grid and scatter, teacher labels, ensemble grid, a
KD student and its no-KD control, the report) runs twice, in two folders, from the same
inputs; every output file must have the same sha256. Timings go to --timing files, which are
no DVC output and are left out of the comparison.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import make_tiny_dataset

from stages.cli import main
from tests.helpers.params import full_params

# the default params with these values (photometric on: its random augmentations must repeat too)
PARAMS = {
    "train_teacher": {"backbone": "resnet18", "input_size": 32, "batch_size": 8, "epochs": 2, "workers": 0,
                      "device": "cpu", "feature_norm": True, "head_lr_mult": 10.0, "photometric": True},
    "evaluate": {"batch_size": 16, "workers": 0, "device": "cpu", "grid_faces": 6, "grid_size": 96},
    "teacher_labels": {"p": 2, "s": 2, "views": 2, "shard_rows": 16, "chunk_rows": 8, "batch_size": 8, "workers": 0,
                       "loader_workers": 0, "device": "cpu"},
    "ensemble_grid": {"p_max": 2, "s": [1, 2], "batch_size": 4, "loader_workers": 0, "device": "cpu"},
    "train_student": {"batch_size": 8, "epochs": 2, "workers": 0, "device": "cpu", "feature_norm": True,
                      "head_lr_mult": 10.0, "photometric": True},
}
COMMANDS = [
    "train-teacher --boxes data/boxes.parquet --out models/teacher.pt --metrics metrics/train_teacher.json "
    "--plots plots/train_teacher.csv --no-progress --timing logs/t.csv",
    "evaluate --model models/teacher.pt --boxes data/boxes.parquet --metrics metrics/eval/base-resnet18.json "
    "--grid plots/eval_base.png --scatter plots/scatter_base.png",
    "teacher-labels --model models/teacher.pt --boxes data/boxes.parquet --out labels/teacher.zarr",
    "ensemble-grid --model models/teacher.pt --boxes data/boxes.parquet --out-json metrics/ensemble_grid.json "
    "--out-csv plots/ensemble_grid.csv --out-png plots/ensemble_grid.png",
    "train-student --labels labels/teacher.zarr --boxes data/boxes.parquet --backbone resnet18 "
    "--out models/student_resnet18.pt --metrics metrics/train_student_resnet18.json "
    "--plots plots/train_student_resnet18.csv --no-progress --timing logs/s.csv",
    "train-student --boxes data/boxes.parquet --backbone resnet18 --kd-weight 0 "
    "--out models/student_nokd_resnet18.pt --metrics metrics/train_student_nokd_resnet18.json --no-progress",
    "evaluate --model models/student_resnet18.pt --boxes data/boxes.parquet --metrics metrics/eval/kd-resnet18.json "
    "--scatter plots/scatter_kd.png",
    "evaluate --model models/student_nokd_resnet18.pt --boxes data/boxes.parquet "
    "--metrics metrics/eval/nokd-resnet18.json",
    "report --metrics-dir metrics/eval --ensemble-grid metrics/ensemble_grid.json "
    f"--p {PARAMS['teacher_labels']['p']} --s {PARAMS['teacher_labels']['s']} "
    f"--backbone {PARAMS['train_teacher']['backbone']} --out reports/table5.md --plot reports/table5.png",
]


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.relative_to(root).as_posix().startswith("logs/")}


@pytest.mark.slow
def test_two_runs_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    make_tiny_dataset(src / "data", n_train=32, n_test=8, size=48, seed=4)
    params = full_params(PARAMS)
    hashes = []
    for run in ("a", "b"):
        root = tmp_path / run
        shutil.copytree(src, root)
        # the tiny dataset records its absolute image root; point each copy at its own images
        import pandas as pd

        df = pd.read_parquet(root / "data" / "boxes.parquet")
        df["root"] = "data/images"
        df.to_parquet(root / "data" / "boxes.parquet", index=False)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        monkeypatch.chdir(root)
        for cmd in COMMANDS:
            res = CliRunner().invoke(main, cmd.split())
            assert res.exit_code == 0, f"{cmd}\n{res.output}"
        hashes.append(_hashes(root))
    assert set(hashes[0]) == set(hashes[1])
    differ = sorted(k for k in hashes[0] if hashes[0][k] != hashes[1][k])
    assert not differ, f"outputs differ between two identical runs: {differ}"
    assert any(k.startswith("labels/teacher.zarr/") for k in hashes[0]) and "models/teacher.pt" in hashes[0]
