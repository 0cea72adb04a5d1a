"""Nothing damaged is ever trained on, and bad input gets one line, never a traceback.

Each test damages a label store the way disks, copies and people do (a shard deleted, bit
flips, a truncated file, two shards swapped, a data file or array metadata deleted) and
checks that the student refuses it naming the store and the shard, and that `labels verify`
reports it. Then the params and output-path checks every stage shares.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import make_tiny_dataset

from pipeline.core.io import atomic_path, sha256_file, sweep_temporaries
from pipeline.manifest.rows import row_ids, split_rows
from pipeline.manifest.schema import read_boxes
from pipeline.teacher import labelread, labelstore
from pipeline.teacher.labelread import load_teacher_labels
from stages.cli import main
from tests.helpers.params import write_params
from tests.helpers.student import make_oracle_store

SIZE = 48


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("integrity")
    boxes = make_tiny_dataset(root, n_train=32, n_test=8, size=SIZE, seed=5)
    store = make_oracle_store(boxes, root / "labels.zarr", size=SIZE, n_views=2, shard_rows=8)
    return boxes, store


def _copy(store: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy.zarr"
    shutil.copytree(store, out)
    return out


def _shard(store: Path, k: int) -> Path:
    return store / "probs" / "c" / str(k) / "0" / "0" / "0"


def _student(boxes: Path, store: Path, tmp_path: Path) -> object:
    params = write_params(tmp_path / "params.yaml", {"train_student": {"epochs": 1, "batch_size": 8, "workers": 0,
                                                                       "device": "cpu", "photometric": False}})
    return CliRunner().invoke(main, ["train-student", "--labels", str(store), "--boxes", str(boxes), "--backbone",
                                     "resnet18", "--out", str(tmp_path / "s.pt"), "--params", str(params),
                                     "--no-progress"])


def _refused(res, *needles: str) -> None:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and res.output.startswith("Error: ")
    assert len(res.output.strip().splitlines()) == 1, res.output
    for n in needles:
        assert n in res.output, res.output


def test_the_good_store_verifies(good: tuple[Path, Path]) -> None:
    boxes, store = good
    assert labelread.verify(str(store), str(boxes)) == []
    assert labelread.info(str(store))["shards_total"] == 4


def test_verify_and_the_student_compare_rows_the_same_way(good: tuple[Path, Path], tmp_path: Path) -> None:
    """One comparison of a store with a boxes table (compare_with_boxes), worded by verify as a
    line and by the student as a ValueError: swapped ids, then a table with other rows."""
    boxes, _ = good
    df = read_boxes(boxes)
    ids = row_ids(df, split_rows(df, "train"))
    swapped = ids[:3] + [ids[4], ids[3]] + ids[5:]
    store = make_oracle_store(boxes, tmp_path / "swapped.zarr", size=SIZE, n_views=2, shard_rows=8, sample_ids=swapped)
    labels = labelread.load_teacher_labels(store)
    found = labelread.compare_with_boxes(labels.attrs, labels.sample_ids, labels.rows, sha256_file(boxes), df)
    assert [(m.field, m.first, m.count, m.store, m.table) for m in found] == [("sample_id", 3, 2, ids[4], ids[3])]
    assert labelread.verify(str(store), str(boxes)) == [
        f"sample_id mismatch at 2 rows, first row 3: store {ids[4]!r} vs manifest {ids[3]!r}"]
    other = make_tiny_dataset(tmp_path / "other", n_train=30, n_test=8, size=SIZE, seed=5)
    found = labelread.compare_with_boxes(labels.attrs, labels.sample_ids, labels.rows, sha256_file(other),
                                         read_boxes(other))
    assert [(m.field, m.store, m.table) for m in found][1:] == [
        ("sample_id", 32, 30), ("row", "store row indices", "the boxes table's training rows")]
    problems = labelread.verify(str(store), str(other))
    assert [p.split(" ")[0] for p in problems] == ["manifest", "store", "boxes_row"], problems
    assert f"store has 32 rows, manifest {str(other)!r} selects 30" in problems


def test_deleted_shard_file_with_done_flag_is_refused(good: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = good
    bad = _copy(store, tmp_path)
    _shard(bad, 1).unlink()  # reads back as the fill value (zeros); the flag still says done
    _refused(_student(boxes, bad, tmp_path), str(bad), "shard 1 (rows 8..15)", "hpekd teacher-labels")
    assert any("shard 1" in p for p in labelread.verify(str(bad)))


@pytest.mark.parametrize("damage", ["bitflip", "truncate"])
def test_flipped_or_truncated_shard_is_refused(good: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    boxes, store = good
    bad = _copy(store, tmp_path)
    f = _shard(bad, 2)
    data = bytearray(f.read_bytes())
    if damage == "bitflip":
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    else:
        data = data[: len(data) // 2]
    f.write_bytes(bytes(data))
    _refused(_student(boxes, bad, tmp_path), str(bad), "shard 2 (rows 16..23)")
    assert any("shard 2" in p for p in labelread.verify(str(bad)))


def test_swapped_shards_are_refused(good: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = good
    bad = _copy(store, tmp_path)
    a, b = _shard(bad, 0), _shard(bad, 3)
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)  # both still decode: only the digests tell
    _refused(_student(boxes, bad, tmp_path), "shard 0 (rows 0..7)", "sha256")
    problems = labelread.verify(str(bad))
    assert any("shard 0" in p for p in problems) and any("shard 3" in p for p in problems)


def test_deleted_views_file_is_refused(good: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = good
    bad = _copy(store, tmp_path)
    for f in (bad / "views" / "c").rglob("*"):
        if f.is_file():
            f.unlink()  # views would read back as identity views
    _refused(_student(boxes, bad, tmp_path), "array 'views'")
    assert any("views" in p for p in labelread.verify(str(bad)))


def test_edited_views_are_caught_by_verify(good: tuple[Path, Path], tmp_path: Path) -> None:
    """verify regenerates the views from (seed, sample_id, view), digest or not."""
    boxes, store = good
    bad = _copy(store, tmp_path)
    g = labelstore.open_store(str(bad), "r+")
    views = np.asarray(g["views"][:])
    views[3, 1, 1] += 1.0
    g["views"][:] = views
    problems = labelread.verify(str(bad))
    assert any("regenerated" in p or "drawn from" in p for p in problems), problems


def test_deleted_array_metadata_is_one_line(good: tuple[Path, Path], tmp_path: Path) -> None:
    boxes, store = good
    bad = _copy(store, tmp_path)
    (bad / "probs" / "zarr.json").unlink()
    _refused(_student(boxes, bad, tmp_path), "array 'probs' is missing")
    res = CliRunner().invoke(main, ["labels", "verify", str(bad)])
    _refused(res, "array 'probs' is missing")


def test_verified_load_returns_exactly_what_was_written(good: tuple[Path, Path]) -> None:
    """The digest-checked load changes no value (its cost is measured by benchmarks/digest_cost.py)."""
    _, store = good
    g = labelstore.open_store(str(store))
    raw = np.asarray(g["probs"][:])
    np.testing.assert_array_equal(load_teacher_labels(str(store)).probs(), raw)


# ----------------------------------------------------------------------------- params and paths


def _params(tmp_path: Path, data: dict) -> Path:
    """``data`` as it is (for a wrong section name)."""
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _full(tmp_path: Path, overrides: dict) -> Path:
    """Complete params with ``overrides`` (for a wrong value: the one thing wrong in the file)."""
    return write_params(tmp_path / "params.yaml", overrides)


def test_misspelt_or_missing_section_names_the_known_ones(tmp_path: Path) -> None:
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    misspelt = {("teacher_label" if k == "teacher_labels" else k): v for k, v in base.items()}
    args = ["teacher-labels", "--model", "m.pt", "--boxes", "b.parquet", "--out", str(tmp_path / "l.zarr"),
            "--params", str(_params(tmp_path, misspelt))]
    res = CliRunner().invoke(main, args)
    _refused(res, "unknown section(s) ['teacher_label']", "known sections", "teacher_labels")
    missing = {k: v for k, v in base.items() if k != "train_teacher"}
    res = CliRunner().invoke(main, ["train-teacher", "--boxes", "b.parquet", "--out", str(tmp_path / "t.pt"),
                                    "--params", str(_params(tmp_path, missing))])
    _refused(res, "no 'train_teacher' section")


def test_wrong_value_type_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["train-teacher", "--boxes", "b.parquet", "--out", str(tmp_path / "t.pt"),
                                    "--params", str(_full(tmp_path, {"train_teacher": {"epochs": "two"}}))])
    _refused(res, "epochs = 'two' is str; expected int")
    res = CliRunner().invoke(main, ["train-teacher", "--boxes", "b.parquet", "--out", str(tmp_path / "t.pt"),
                                    "--params", str(_full(tmp_path, {"train_teacher": {"input_size": [32, "x"]}}))])
    _refused(res, "input_size", "expected int or [int, int]")


@pytest.mark.parametrize("command", [
    ["train-teacher", "--boxes", "{boxes}", "--out", "{blocked}/t.pt"],
    ["index", "--out", "{blocked}/manifest.parquet"],
    ["teacher-labels", "--model", "m.pt", "--boxes", "{boxes}", "--out", "{blocked}/l.zarr"],
])
def test_output_under_a_regular_file_fails_before_any_work(good: tuple[Path, Path], tmp_path: Path,
                                                           command: list[str]) -> None:
    boxes, _ = good
    blocked = tmp_path / "a_file"
    blocked.write_text("x")
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    args = [a.format(boxes=boxes, blocked=blocked) for a in command] + ["--params", str(params)]
    res = CliRunner().invoke(main, args)
    _refused(res, str(blocked), "is a file, not a folder")


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["train-teacher", "--boxes", "b.parquet", "--out", str(tmp_path / "t.pt"),
            "--params", str(_full(tmp_path, {"train_teacher": {"epochs": "two"}}))]
    monkeypatch.delenv("HPEKD_DEBUG", raising=False)
    try:
        res = CliRunner().invoke(main, ["--debug", *args])
    finally:
        os.environ.pop("HPEKD_DEBUG", None)  # set by --debug for this process
    assert isinstance(res.exception, ValueError) and "epochs" in str(res.exception)
    res = CliRunner().invoke(main, ["--debug", *args], env={"HPEKD_DEBUG": "0"})
    os.environ.pop("HPEKD_DEBUG", None)
    res = CliRunner().invoke(main, args, env={"HPEKD_DEBUG": "1"})
    assert isinstance(res.exception, ValueError)


def test_stale_temporaries_of_a_killed_writer_are_swept(tmp_path: Path) -> None:
    dest = tmp_path / "teacher.pt"
    dead = tmp_path / ".teacher.pt.999999999.abcd1234.pt"  # no such pid
    dead.write_bytes(b"half a checkpoint")
    live = tmp_path / f".teacher.pt.{os.getpid()}.efgh5678.pt"  # a writer that is still running
    live.write_bytes(b"in progress")
    other = tmp_path / ".other.pt.999999999.abcd1234.pt"
    other.write_bytes(b"not ours")
    with atomic_path(dest, ".pt") as tmp:
        tmp.write_bytes(b"checkpoint")
    assert dest.read_bytes() == b"checkpoint"
    assert not dead.exists() and live.exists() and other.exists()
    assert sweep_temporaries(dest) == 0
