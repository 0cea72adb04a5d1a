"""Rewrite a label store in another encoding and/or with its first V views
(``hpekd labels convert``): share a compact store, or try fewer views, without rerunning the
teacher.

Views are keyed by (seed, sample_id, view) (:mod:`pipeline.core.views`), so the first V views of
a store are the views a V-view job draws; the converted store's provenance says V and the new
encoding, and ``hpekd labels verify`` checks it like any other. The distributions are re-encoded
from the source's decoded values: float16 → any encoding gives the bytes the teacher job would
write for the same float16 distributions; converting from a compact encoding cannot restore
what it dropped (the provenance records the source's encoding under ``converted_from``).
The source is verified first and the target written beside and swapped in
(:func:`pipeline.core.io.replace_folder`), so a failed conversion never leaves a half-written
store at ``dst``, and ``dst`` is replaced only when it is an hpekd label store.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from pipeline.core.io import check_folder_output, replace_folder
from pipeline.teacher import labelstore
from pipeline.teacher.encoding import Encoding
from pipeline.teacher.labelread import load_teacher_labels
from pipeline.teacher.provenance import Provenance
from pipeline.teacher.target import LABEL_STORE

log = logging.getLogger(__name__)


def convert_store(src: str, dst: str, encoding: str | None = None, views: int | None = None) -> dict[str, Any]:
    """Write ``src`` to the local path ``dst`` in ``encoding`` (default: the source's) with its
    first ``views`` views (default: all). Returns ``{"encoding", "views", "rows"}``."""
    out = labelstore.local_path(str(dst))
    if out is None:
        raise ValueError(f"convert writes a local store; {dst!r} is a URL (convert locally, then upload)")
    if Path(str(src)).resolve() == out.resolve():
        raise ValueError(f"source and target are the same store {src!r}: give another --out")
    check_folder_output(out, LABEL_STORE, "--out", [src])  # before the source is read
    labels = load_teacher_labels(src, max_gb=float("inf"))
    n_views = labels.n_views if views is None else int(views)
    if not 1 <= n_views <= labels.n_views:
        raise ValueError(f"views={views!r}: the store {src!r} has {labels.n_views} view(s); choose 1..{labels.n_views}")
    enc = Encoding(encoding or labels.encoding.name, labels.n_bins)
    prov = Provenance.from_attrs(labels.attrs)
    old = prov.layout or {}
    layout = labelstore.Layout(old["n_rows"], n_views, old["n_bins"], old["shard_rows"], old["chunk_rows"])
    converted = ({"converted_from": labels.encoding.name}
                 if labels.encoding.name != "float16" and enc.name != labels.encoding.name else {})
    extra = {k: v for k, v in prov.extra.items() if k != "content"}  # create_layout writes the new content
    attrs = dataclasses.replace(prov, layout=layout.to_dict(), views=dataclasses.replace(prov.views, V=n_views),
                                encoding={**enc.to_dict(), **converted}, extra=extra).to_attrs()
    with replace_folder(out, LABEL_STORE, "--out", [src]) as tmp:
        g = labelstore.create_layout(str(tmp), attrs, list(labels.sample_ids), labels.rows, labels.views[:, :n_views])
        for k in range(layout.n_shards):
            a, b = layout.shard_range(k)
            dense = labels.encoding.decode({name: arr[a:b, :n_views] for name, arr in labels.parts.items()})
            labelstore.write_shard(g, k, dense)
        if not labelstore.verified_shards(labelstore.open_store(str(tmp)), str(tmp)).all():
            raise RuntimeError(f"converted store {tmp} failed its own check; {dst!r} was not touched")
    log.info("wrote %s: %d rows, %d view(s), encoding %s", out, layout.n_rows, n_views, enc.name)
    return {"encoding": enc.name, "views": n_views, "rows": layout.n_rows}


__all__ = ["convert_store"]
