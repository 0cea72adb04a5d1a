"""`hpekd labels info|verify`: inspect and check a teacher-label store."""

from __future__ import annotations

import json

import click

from pipeline.teacher import labelread
from stages.common import user_errors


@click.group()
def cli() -> None:
    """Inspect teacher-label stores (provenance, completeness, integrity)."""


@cli.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@user_errors
def info(path: str, as_json: bool) -> None:
    """Print the provenance and completeness of the store at PATH."""
    rec = labelread.info(path)
    if as_json:
        click.echo(json.dumps(rec, indent=2, sort_keys=True))
        return
    a = rec["attributes"]
    lay, ens, bins, t, v, m = a["layout"], a["ensemble"], a["bins"], a["teacher"], a["views"], a["manifest"]
    lines = [
        f"store      {path}  ({a['format']} v{a['format_version']}, hpekd {a['package']['version']})",
        f"teacher    {t['architecture']} sha256 {t['sha256']}  head {t['head']}",
        f"bins       b={bins['b']:g} theta={bins['theta']:g} Q={bins['Q']}",
        f"ensemble   p={ens['p']} s={ens['s']} A={ens['A']}  input {a['input']['size'][0]}x{a['input']['size'][1]}",
        f"views      V={v['V']} seed={v['seed']} flip_prob={v['flip_prob']} max_angle={v['max_angle']}",
        f"encoding   {rec['encoding']}: {rec['bytes_per_image_view']} B per image-view raw"
        + (f", {rec['label_bytes'] / max(1, lay['n_rows'] * v['V']):.0f} B stored ({rec['label_bytes']:,} B in all)"
           if rec["label_bytes"] is not None else ""),
        f"manifest   {m['name']} sha256 {m['sha256']}  split={m['split']}  "
        f"{m.get('labelled', '?')} labelled + {m.get('unlabelled', '?')} unlabelled rows",
        f"rows       {rec['rows_done']}/{rec['rows_total']} done, shards {rec['shards_done']}/{rec['shards_total']} "
        f"({lay['shard_rows']} rows per shard)",
        f"complete   {'yes' if rec['complete'] else 'NO (rerun hpekd teacher-labels to finish)'}",
    ]
    click.echo("\n".join(lines))


@cli.command()
@click.argument("path")
@click.option("--boxes", default=None, type=click.Path(dir_okay=False),
              help="boxes.parquet the store must match (sample ids, row order, sha256).")
@user_errors
def verify(path: str, boxes: str | None) -> None:
    """Check every shard of PATH is done, decodes, is finite and sums to 1 per angle."""
    problems = labelread.verify(path, boxes)
    if problems:
        raise click.ClickException(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    click.echo(f"{path}: OK")


@cli.command()
@click.argument("src")
@click.option("--out", "dst", required=True, help="The new store (a local path); an existing one is replaced only when it is an hpekd label store.")
@click.option("--encoding", default=None,
              help="float16 | uint8 | topK (e.g. top16); default: the source's (docs/usage.md \"How many views, which encoding\").")
@click.option("--views", type=int, default=None, help="Keep the first V views (default: all).")
@user_errors
def convert(src: str, dst: str, encoding: str | None, views: int | None) -> None:
    """Rewrite the store SRC in another encoding and/or with fewer views, without the teacher."""
    from pipeline.teacher.convert import convert_store

    res = convert_store(src, dst, encoding, views)
    click.echo(f"{dst}: {res['rows']} rows, {res['views']} view(s), encoding {res['encoding']}")
