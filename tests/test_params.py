"""params.yaml and the paper recipe are valid for every stage, and dvc.yaml lists only keys
that exist (a typo there would silently drop a dependency)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.core.config import config_from_mapping
from stages.common import OTHER_KEYS, SECTIONS, section_class

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["params.yaml", "configs/params.paper.yaml", "configs/params.protocol1.yaml",
                                  "configs/params.protocol2.yaml", "configs/params.protocol3.yaml"])
def test_every_section_loads(name: str) -> None:
    params = yaml.safe_load((ROOT / name).read_text())
    assert set(params) - set(OTHER_KEYS) == set(SECTIONS), "every params section has a config class"
    for section in SECTIONS:
        if section != "train_student":
            config_from_mapping(section_class(section), params[section], f"{name} section {section!r}")
    for backbone in params["students"]:
        config_from_mapping(section_class("train_student"), {**params["train_student"], "backbone": backbone}, name)


def test_paper_recipe_values() -> None:
    p = yaml.safe_load((ROOT / "configs/params.paper.yaml").read_text())
    t, l, s = p["train_teacher"], p["teacher_labels"], p["train_student"]
    assert (t["backbone"], t["input_size"], t["batch_size"], t["epochs"], t["lr"]) == ("resnet50", 224, 128, 100, 1e-4)
    assert list(t["bin_sizes"]) == [1, 2, 3, 4] and t["regression"]
    assert (l["p"], l["s"]) == (15, 5)
    assert (s["lr"], s["batch_size"], s["epochs"], s["ce_weight"]) == (3e-4, 128, 100, 0.05)


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
