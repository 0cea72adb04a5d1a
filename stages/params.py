"""`hpekd params`: switch the pipeline between the default and a protocol/recipe, and check it.

`apply` writes a complete params.yaml from configs/default.yaml and overlays (configs/*.yaml,
each holding only the keys it changes), after checking the result the way the stages will —
every key present, every value valid, every dataset root and box file where it is said to be —
so a bad configuration fails here, in one line, before any stage has run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from stages.common import OTHER_KEYS, SECTIONS, STUDENT_LISTS, check_outputs, section_class, user_errors

DEFAULT = "configs/default.yaml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# what the pipeline writes under data/ (dvc.yaml): data_root may not contain it
OWN_OUTPUTS = ("data/manifest.parquet", "data/boxes.parquet", "data/relabel_cache")


def check_params(params: Mapping[str, Any], where: str, check_paths: bool = True) -> None:
    """Everything a stage will check, for every stage at once, plus what ties the sections
    together (data_root, the synthetic folders, the datasets that relabel names). Raises
    ``ValueError`` with one line naming the key."""
    from pipeline.core.config import config_from_mapping

    unknown = sorted(set(params) - set(SECTIONS) - set(OTHER_KEYS))
    missing = sorted((set(SECTIONS) | set(OTHER_KEYS)) - set(params))
    if unknown or missing:
        raise ValueError(f"{where}: unknown key(s) {unknown} / missing key(s) {missing} at the top level; "
                         f"known: {sorted(SECTIONS) + sorted(OTHER_KEYS)}")
    configs = {}
    for section in SECTIONS:
        configs[section] = config_from_mapping(section_class(section), params[section], f"{where} section {section!r}",
                                               require_all=True)
    _check_shape(params, where)
    for backbone in [b for key in STUDENT_LISTS for b in params[key]]:
        config_from_mapping(section_class("train_student"), {**params["train_student"], "backbone": backbone},
                            f"{where} section 'train_student' (student {backbone})", require_all=True)
    _check_inputs(params, configs["index"], configs["relabel"], check_paths)


def _check_shape(params: Mapping[str, Any], where: str) -> None:
    for key in ("run", "data_root"):
        if not isinstance(params[key], str) or not params[key]:
            raise ValueError(f"{where}: {key} must be a non-empty string, got {params[key]!r}")
    if not NAME_RE.match(params["run"]):
        raise ValueError(f"{where}: run {params['run']!r} must be a simple name (letters, digits, _ . -): it names "
                         "the results' folders")
    for key in ("synthetic", *STUDENT_LISTS):
        value = params[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and NAME_RE.match(v) for v in value):
            raise ValueError(f"{where}: {key} must be a list of names, got {value!r}")


def _check_inputs(params: Mapping[str, Any], index: Any, relabel: Any, check_paths: bool) -> None:
    from pipeline.core.io import check_inside, is_inside

    data_root = params["data_root"]
    for out in OWN_OUTPUTS:
        if is_inside(out, data_root):
            raise ValueError(f"data_root {data_root!r} holds the pipeline's own output {out!r}: the index and relabel "
                             "stages depend on data_root, so it must hold only raw inputs (e.g. data/raw)")
    rendered = [f"data/{name}" for name in params["synthetic"]]
    names = [spec.name for spec in index.datasets]
    for key in ("sources", "box_files"):
        extra = sorted(set(getattr(relabel, key)) - set(names))
        if extra:
            raise ValueError(f"relabel.{key} names dataset(s) {extra} that index.datasets does not have (known: "
                             f"{names}): fix the name or remove the entry")
    boxes = [(f"relabel.box_files.{ds}", path) for ds, path in relabel.file_box_files().items()]
    for ds in names:
        if relabel.source_for(ds) == "file" and ds not in relabel.box_files:
            raise ValueError(f"relabel: dataset {ds!r} takes its boxes from a file (source: file) but relabel.box_files "
                             "has no entry for it: add `{ds}: path/to/boxes.json` or give it another source in relabel.sources")
    inputs = index.input_paths() + boxes
    for folder in rendered:
        if not any(is_inside(spec.root, folder) for spec in index.datasets):
            raise ValueError(f"synthetic renders {folder!r} but no dataset of index.datasets reads it: set `synthetic: []` "
                             "for real data, or add the synthetic dataset")
    check_inside(inputs + [(f"synthetic ({folder})", folder) for folder in rendered], data_root)
    if not check_paths:
        return
    for key, path in inputs:
        if not any(is_inside(path, folder) for folder in rendered) and not Path(path).exists():
            raise ValueError(f"{key} = {path!r} does not exist: put the data there (README \"Reproducing the paper\") "
                             "or fix the path")


def _write(params: dict[str, Any], out: str, default: str, overlays: tuple[str, ...]) -> None:
    from pipeline.core.io import atomic_path
    from pipeline.core.overlay import render

    cmd = "hpekd params " + ("apply " + " ".join(overlays) if overlays else "reset")
    header = (f"Written by `{cmd}` from {default}{' + ' + ', '.join(overlays) if overlays else ''}.\n"
              "Edit the overlay and apply it again, or edit a value here (`dvc exp run -S key=value` does);\n"
              "`hpekd params check` checks this file.")
    text = render(default, params, header)
    with atomic_path(out, ".yaml") as tmp:
        Path(tmp).write_text(text)


@click.group()
def cli() -> None:
    """Write or check params.yaml: the default, or the default with overlays (configs/*.yaml)."""


@cli.command("apply")
@click.argument("overlays", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="params file to write.")
@click.option("--default", "default", default=DEFAULT, show_default=True, type=click.Path(dir_okay=False),
              help="the default params: the one list of keys.")
@click.option("--no-check-paths", is_flag=True, help="Do not require dataset roots and box files to exist yet.")
@click.option("--dry-run", is_flag=True, help="Check and show the changes; write nothing.")
@user_errors
def apply_cmd(overlays: tuple[str, ...], out: str, default: str, no_check_paths: bool, dry_run: bool) -> None:
    """Write a complete params.yaml: the default with OVERLAYS applied in order.

    An overlay holds only the keys it changes (and may `extends: other.yaml`); an unknown key,
    a missing dataset root or box file, or any value a stage would refuse stops here, in one
    line, and nothing is written. Prints every value that differs from the default. Then run
    `dvc repro`. Example: `hpekd params apply configs/protocol1.yaml`.
    """
    from pipeline.core.overlay import compose

    check_outputs([default, *overlays], params_file=out)
    params, changes = compose(default, overlays)
    check_params(params, "the result" if overlays else default, check_paths=not no_check_paths)
    final: dict[str, Any] = {}
    for ch in changes:  # the last change of a key wins; report each key once
        final[ch.key] = ch
    if dry_run:
        click.echo(f"would write {out}")
    else:
        _write(params, out, default, overlays)
        click.echo(f"wrote {out}")
    click.echo(f"{len(final)} value(s) differ from {default}:" if final else f"identical to {default}")
    for ch in final.values():
        click.echo("  " + ch.describe())


@cli.command("reset")
@click.option("--out", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="params file to write.")
@click.option("--default", "default", default=DEFAULT, show_default=True, type=click.Path(dir_okay=False),
              help="the default params.")
@user_errors
def reset_cmd(out: str, default: str) -> None:
    """Write the default params (the synthetic pipeline) back to params.yaml."""
    from pipeline.core.overlay import compose

    check_outputs([default], params_file=out)
    params, _ = compose(default, ())
    check_params(params, default)
    _write(params, out, default, ())
    click.echo(f"wrote {out} (the default: {default})")


@cli.command("check")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="params file to check.")
@click.option("--no-check-paths", is_flag=True, help="Do not require dataset roots and box files to exist yet.")
@user_errors
def check_cmd(params_path: str, no_check_paths: bool) -> None:
    """Check a params file as every stage will (complete, valid, inputs in place)."""
    from pipeline.core.overlay import read_yaml_mapping

    check_params(read_yaml_mapping(params_path, "params file"), params_path, check_paths=not no_check_paths)
    click.echo(f"{params_path}: complete and valid")
