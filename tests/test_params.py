"""The paper recipe's values, and dvc.yaml's params lists: only keys that exist in params.yaml (a
typo there would silently drop a dependency), and no student key in a teacher stage.
(That every shipped config is complete for every stage: tests/test_params_overlay.py.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.core.overlay import compose

ROOT = Path(__file__).resolve().parents[1]


def test_paper_recipe_values() -> None:
    """configs/paper.yaml on the default gives the paper's recipe (sections 4-5)."""
    p, _ = compose(ROOT / "configs/default.yaml", [ROOT / "configs/paper.yaml"])
    t, l, g, s = p["train_teacher"], p["teacher_labels"], p["ensemble_grid"], p["train_student"]
    assert (t["backbone"], t["input_size"], t["batch_size"], t["epochs"], t["lr"]) == ("resnet50", 224, 128, 100, 1e-4)
    assert list(t["bin_sizes"]) == [1, 2, 3, 4] and t["regression"]
    assert (t["feature_norm"], t["head_lr_mult"], t["scheduler"], t["photometric"], t["pretrained"]) == (
        False, 1, "none", True, True)
    assert (l["p"], l["s"], l["views"]) == (15, 5, 8)
    assert (g["p_max"], list(g["s"])) == (15, [1, 3, 5, 15])
    assert (s["lr"], s["batch_size"], s["epochs"], s["ce_weight"], s["kd_weight"]) == (3e-4, 128, 100, 0.05, 1.0)
    assert (s["feature_norm"], s["head_lr_mult"], s["scheduler"], s["photometric"], s["pretrained"]) == (
        False, 1, "none", True, True)
    assert p["students"] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def test_dvc_params_keys_exist() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for key in body.get("params", []):
            node = params
            for part in str(key).split("."):
                assert isinstance(node, dict) and part in node, f"stage {name}: param {key!r} not in params.yaml"
                node = node[part]


def test_teacher_stages_ignore_student_params() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("train_teacher", "teacher_labels", "ensemble_grid"):
        keys = [str(k) for k in stages[name].get("params", [])]
        assert not any(k.startswith(("train_student", "students")) for k in keys), name
    # performance-only settings of the teacher job do not invalidate the label store
    assert not any(k.endswith((".workers", ".device", ".batch_size", ".loader_workers"))
                   for k in stages["teacher_labels"]["params"])
