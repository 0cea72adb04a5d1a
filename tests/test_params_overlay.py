"""One source of config values: the default params, overlays holding only what they change,
`hpekd params apply/reset/check`, and complete params files (no key ever falls back to a
dataclass default)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.core.overlay import compose, merge, overlay_chain
from stages.cli import main
from stages.common import OTHER_KEYS, SECTIONS
from stages.params import check_params

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "configs" / "default.yaml"
OVERLAYS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name != "default.yaml")


def _default() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


# ----------------------------------------------------------------------------- merging


def test_merge_replaces_values_and_lists_and_merges_mappings() -> None:
    base = {"a": {"x": 1, "lst": [1, 2], "m": {"k": 1}}, "b": [1]}
    out, changes = merge(base, {"a": {"x": 2, "lst": [3], "m": {"j": 2}}}, "o.yaml")
    assert out == {"a": {"x": 2, "lst": [3], "m": {"k": 1, "j": 2}}, "b": [1]}
    assert base["a"]["x"] == 1, "the base is not modified"
    assert [c.key for c in changes] == ["a.x", "a.lst", "a.m.j"]


@pytest.mark.parametrize("overlay, match", [
    ({"train_teacher": {"lr_typo": 1}}, r"unknown key 'train_teacher.lr_typo'"),
    ({"teacher_label": {"p": 1}}, r"unknown key 'teacher_label' .*no such section"),
    ({"relabel": {"box_files": "x.json"}}, r"'relabel.box_files' must be a mapping"),
])
def test_merge_refuses_unknown_keys_and_shape_changes(overlay: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        merge(_default(), overlay, "o.yaml")


def test_extends_applies_the_parent_first_and_refuses_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("train_teacher: {epochs: 3, lr: 0.5}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\ntrain_teacher: {epochs: 4}\n")
    assert [Path(f).name for f, _ in overlay_chain(tmp_path / "b.yaml")] == ["a.yaml", "b.yaml"]
    params, _ = compose(DEFAULT, [tmp_path / "b.yaml"])
    assert (params["train_teacher"]["epochs"], params["train_teacher"]["lr"]) == (4, 0.5)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    with pytest.raises(ValueError, match="extends itself"):
        compose(DEFAULT, [tmp_path / "b.yaml"])


# ----------------------------------------------------------------------------- shipped configs


def _dvc_keys() -> set[str]:
    """Every params key dvc.yaml uses: `params:` lists and ${...} references (foreach/do too)."""
    text = (ROOT / "dvc.yaml").read_text()
    keys = {k for k in re.findall(r"\$\{([^}]+)\}", text) if not k.startswith(("item", "key"))}
    for st in yaml.safe_load(text)["stages"].values():
        body = st.get("do", st)
        keys |= {str(k) for k in body.get("params", [])}
        if "foreach" in st:
            keys.add(st["foreach"].strip("${}"))
    return keys


def _has(params: dict, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("overlay", [None, *OVERLAYS], ids=lambda p: "default" if p is None else p.name)
def test_every_shipped_config_is_complete_for_every_stage(overlay: Path | None) -> None:
    params, _ = compose(DEFAULT, [overlay] if overlay else [])
    check_params(params, str(overlay or DEFAULT), check_paths=False)  # every section, every key, every student
    missing = sorted(k for k in _dvc_keys() if not _has(params, k))
    assert not missing, f"{overlay}: dvc.yaml uses params keys the config lacks: {missing}"
    assert set(params) == set(SECTIONS) | set(OTHER_KEYS)


@pytest.mark.slow
def test_dvc_resolves_the_graph_of_every_shipped_config(tmp_path: Path) -> None:
    """DVC itself templates dvc.yaml with each config's params (foreach over students, the
    synthetic folders, data_root and run in paths): `dvc stage list` succeeds and shows the stages
    that config should have."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    for overlay in [None, *OVERLAYS]:
        params, _ = compose(DEFAULT, [overlay] if overlay else [])
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        res = subprocess.run([dvc, "stage", "list"], cwd=tmp_path, capture_output=True, text=True)
        assert res.returncode == 0, f"{overlay}: {res.stderr}"
        names = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
        assert {f"train_student@{b}" for b in params["students"]} <= names
        assert ("synthesize@synthetic" in names) == bool(params["synthetic"]), overlay
        assert f"metrics/{params['run']}/" in res.stdout


def test_committed_params_yaml_is_the_default_as_written_by_reset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "params.yaml"
    res = CliRunner().invoke(main, ["params", "reset", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == (ROOT / "params.yaml").read_text(), "params.yaml is out of date: run `hpekd params reset`"


# overlays made to stack on another (the base they restore values of)
STACKED_ON = {"rehearsal.yaml": "protocol1.yaml"}


def test_overlays_hold_only_what_they_change() -> None:
    """An overlay never repeats a value of what it applies to (the default, what it extends, or
    for a stacking overlay the protocol it stacks on): a repeated value hides what it changes."""
    for path in OVERLAYS:
        data = yaml.safe_load(path.read_text())
        parents = data.pop("extends", None)
        parents = [parents] if isinstance(parents, str) else list(parents or [])
        parents += [STACKED_ON[path.name]] if path.name in STACKED_ON else []
        base, _ = compose(DEFAULT, [path.parent / p for p in parents])
        for section, values in data.items():
            if isinstance(values, dict) and isinstance(base.get(section), dict):
                same = [k for k, v in values.items() if base[section].get(k) == v and not isinstance(v, dict)]
                assert not same, f"{path.name}: {section}.{same} repeat the value it applies to"


# ----------------------------------------------------------------------------- the command


def _project(tmp_path: Path) -> Path:
    (tmp_path / "configs").mkdir()
    shutil.copy(DEFAULT, tmp_path / "configs" / "default.yaml")
    return tmp_path


def test_apply_writes_a_complete_params_file_and_says_what_changed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(_project(tmp_path))
    Path("mine.yaml").write_text("run: mine\ntrain_teacher: {epochs: 3}\nstudents: [resnet34]\n")
    res = CliRunner().invoke(main, ["params", "apply", "mine.yaml"])
    assert res.exit_code == 0, res.output
    assert "3 value(s) differ" in res.output and "train_teacher.epochs: 12 -> 3  (mine.yaml)" in res.output
    text = Path("params.yaml").read_text()
    assert text.startswith("# Written by `hpekd params apply mine.yaml`")
    assert "# detector | landmarks | file | table" in text, "the default's comments are kept"
    params = yaml.safe_load(text)
    assert params["train_teacher"]["epochs"] == 3 and params["students"] == ["resnet34"] and params["run"] == "mine"
    check_params(params, "params.yaml", check_paths=False)
    res = CliRunner().invoke(main, ["params", "reset"])
    assert res.exit_code == 0 and yaml.safe_load(Path("params.yaml").read_text()) == _default()


@pytest.mark.parametrize("overlay, match", [
    ("train_teacher: {epoch: 3}\n", r"unknown key 'train_teacher.epoch'"),
    ("train_teacher: {epochs: two}\n", r"epochs = 'two' is str; expected int"),
    ("data_root: data/raw\nsynthetic: []\nindex: {datasets: [{name: a, format: aflw2000, root: data/raw/A, split: test}]}\n",
     r"index.datasets\[a\].root = 'data/raw/A' does not exist"),
    ("data_root: data\nsynthetic: []\nindex: {datasets: [{name: a, format: aflw2000, root: data/A, split: test}]}\n",
     r"data_root 'data' holds the pipeline's own output 'data/manifest.parquet'"),
    ("data_root: data/raw\nsynthetic: []\nindex: {datasets: [{name: a, format: aflw2000, root: elsewhere/A, split: test}]}\n",
     r"index.datasets\[a\].root = 'elsewhere/A' lies outside data_root 'data/raw'"),
    ("relabel: {sources: {synth_test: file}}\n", r"relabel.sources.synth_test is 'file' but relabel.box_files has no entry"),
    ("relabel: {sources: {nobody: landmarks}}\n", r"relabel.sources names dataset\(s\) \['nobody'\]"),
    ("synthetic: [synthetic, extra]\n", r"synthetic renders 'data/extra' but no dataset"),
])
def test_apply_refuses_bad_configs_in_one_line_and_writes_nothing(tmp_path: Path, monkeypatch, overlay: str,
                                                                  match: str) -> None:
    monkeypatch.chdir(_project(tmp_path))
    Path("params.yaml").write_text("keep: me\n")
    Path("bad.yaml").write_text(overlay)
    res = CliRunner().invoke(main, ["params", "apply", "bad.yaml"])
    assert res.exit_code == 1
    assert re.search(match, res.output), res.output
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1 and "Traceback" not in res.output
    assert Path("params.yaml").read_text() == "keep: me\n", "nothing is written before the config is checked"


def test_protocol_without_its_data_fails_at_apply_naming_the_missing_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "configs", "configs")
    res = CliRunner().invoke(main, ["params", "apply", "configs/protocol2.yaml"])
    assert res.exit_code == 1 and "index.datasets[aflw].root = 'data/raw/aflw/data' does not exist" in res.output
    assert not Path("params.yaml").exists()


# ----------------------------------------------------------------------------- stages


def test_a_stage_refuses_a_params_file_that_lacks_a_key(tmp_path: Path) -> None:
    """The bug this replaces: the paper configs lacked train_student.kd_weight & co., and the
    student stage failed only after the teacher had trained (or took dataclass defaults)."""
    params = _default()
    del params["train_student"]["kd_weight"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    res = CliRunner().invoke(main, ["train-student", "--params", str(tmp_path / "params.yaml"), "--labels",
                                    str(tmp_path / "none.zarr"), "--boxes", str(tmp_path / "none.parquet"),
                                    "--backbone", "resnet18", "--out", str(tmp_path / "s.pt")])
    assert res.exit_code == 1
    assert "section 'train_student' lacks key(s) ['kd_weight']" in res.output and res.output.count("\n") == 1
