"""The one table of Table-5 roles (pipeline/evaluation/roles.py): every reader of role names goes
through it, so a file prefix, a label or a comparison is spelt once."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from pipeline.evaluation.comparisons import pairs
from pipeline.evaluation.roles import COMPARISONS, FILE_ROLES, ROLES, STUDENT_ROLES, file_name, role_of_file
from stages.report import cli

ROOT = Path(__file__).resolve().parents[1]


def test_file_names_round_trip() -> None:
    assert FILE_ROLES == ("base", "ensemble", "kd", "online", "nokd", "soft")
    assert STUDENT_ROLES == ("kd", "online", "nokd", "soft")
    for role in FILE_ROLES:
        assert role_of_file(file_name(role, "resnet34")) == (role, "resnet34")
    assert file_name("soft", "resnet18", ".parquet") == "soft-resnet18.parquet"
    for other in ("train_student_resnet18.json", "kd-ResNet18.json", "kd-resnet18.csv", "nokd_resnet18.json",
                  "teacher-resnet18.json"):
        assert role_of_file(other) is None, other


def test_one_label_per_role() -> None:
    assert ROLES["nokd"].row_label("resnet18") == "Student-ResNet18 without KD"
    assert ROLES["online"].row_label("resnet50") == "KD-online-ResNet50"
    assert ROLES["nokd"].short == "Student without KD" and ROLES["mean"].short == "Predict the training mean"
    labels = [r.row_label("resnet18") for r in ROLES.values()]
    assert len(set(labels)) == len(labels)


def test_comparisons_name_known_roles_and_always_include_nokd_minus_base() -> None:
    for c in COMPARISONS:
        assert c.a in FILE_ROLES and c.b in FILE_ROLES and c.against
    keys = [("base", "resnet50"), ("kd", "resnet18"), ("nokd", "resnet18"), ("nokd", "resnet34")]
    assert pairs(keys) == [
        (("kd", "resnet18"), ("base", "resnet50")), (("kd", "resnet18"), ("nokd", "resnet18")),
        (("nokd", "resnet18"), ("base", "resnet50")), (("nokd", "resnet34"), ("base", "resnet50")),
    ]
    soft = sorted([*keys, ("soft", "resnet18")])
    assert (("kd", "resnet18"), ("soft", "resnet18")) in pairs(soft)
    assert (("soft", "resnet18"), ("nokd", "resnet18")) in pairs(soft)


def test_dvc_yaml_writes_only_known_roles() -> None:
    """Every evaluation file that dvc.yaml's evaluate stages write is named by a role's prefix, and
    the role's students list is the one that stage iterates over."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    seen = set()
    for name, stage in stages.items():
        body = stage.get("do", stage)
        m = re.search(r"--metrics metrics/\$\{run\}/eval/([a-z]+-)\$\{item\}\.json", body.get("cmd", ""))
        if not m:
            continue
        role = role_of_file(f"{m.group(1)}resnet18.json")
        assert role is not None, f"dvc.yaml stage {name!r} writes an evaluation with unknown prefix {m.group(1)!r}"
        assert stage["foreach"] == "${" + str(ROLES[role[0]].students) + "}", name
        seen.add(role[0])
    assert {"kd", "nokd", "online", "soft"} <= seen


def test_role_lists_are_the_params_student_lists() -> None:
    """The student lists are named once (stages.common.STUDENT_LISTS); the role table agrees."""
    from stages.common import STUDENT_LISTS

    assert {r.students for r in ROLES.values() if r.students} == set(STUDENT_LISTS)


def test_report_help_lists_every_role() -> None:
    res = CliRunner().invoke(cli, ["--help"], terminal_width=400)
    text = " ".join(res.output.split())
    for role in FILE_ROLES:
        assert f"{ROLES[role].prefix}<backbone>" in text, role
    assert "--seed-spread" in text


def test_bar_chart_uses_the_role_labels(tmp_path: Path) -> None:
    from pipeline.evaluation.figures import bar_chart
    from pipeline.evaluation.results import Result, Row

    rows = [Row(role, "resnet18", {"t": Result(1.0, 2.0, 3.0, 2.0)}, "x") for role in FILE_ROLES]
    bar_chart(rows, ["t"], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"  # every role has its colour map
