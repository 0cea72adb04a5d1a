"""The Table-5 report: MAE of every model that was run, per test set, as Markdown + a bar chart,
then the paired differences and one plain sentence per comparison.

What it reads (evaluation files, the ensemble grid, per-face errors, the seed spread) is found and
validated by :mod:`pipeline.evaluation.results`; the roles, their labels and the comparisons are
the table of :mod:`pipeline.evaluation.roles`. This module only writes: the Markdown table
(:func:`markdown_table`), the differences (:func:`differences_table`), the findings
(:func:`findings`) and the chart (:func:`pipeline.evaluation.figures.bar_chart`).

A method "beats" another only when the paired interval over the test faces lies below 0. That
interval covers the test faces, not the training seed: with a ``--seed-spread`` measured by
``benchmarks/kd_effect.py`` the report prints that spread beside every verdict and marks a
difference smaller than about two seed SDs as one another seed could overturn.
"""

from __future__ import annotations

import logging
import math
import os

from pipeline.core.io import atomic_path, write_json
from pipeline.evaluation.comparisons import Comparison, compare, interval_text, pairs, to_metrics, verdict_phrase
from pipeline.evaluation.figures import bar_chart
from pipeline.evaluation.results import Row, SeedSpread, collect, row_errors, test_sets
from pipeline.evaluation.roles import COMPARISONS, ROLES
from pipeline.evaluation.uncertainty import Difference

log = logging.getLogger(__name__)

_CONTRAST = {(c.a, c.b): c for c in COMPARISONS}
_VERDICT = {"lower": "lower (beats)", "higher": "higher (worse)", "none": "no measurable difference"}


def _label(key: tuple[str, str]) -> str:
    return ROLES[key[0]].row_label(key[1])


def _spread_text(diff: Difference, spread: SeedSpread | None) -> str:
    if spread is None:
        return ""
    text = f"; seed-to-seed spread of a difference: ±{spread.delta_sd:.2f} ({spread.source})"
    return text + (", so another training seed could overturn this" if spread.could_flip(diff.delta) else "")


def _versus(diff: Difference | None, a: float, b: float, other: str, spread: SeedSpread | None) -> str:
    """"beats its teacher (5.27 vs 5.61; Δ −0.34, 95 % CI [−0.45, −0.22], n = 1000)"."""
    if diff is None:
        return f"has {a:.2f} against {b:.2f} for {other} (no per-face errors: no interval, no verdict)"
    return f"{verdict_phrase(diff)} {other} ({a:.2f} vs {b:.2f}; {interval_text(diff)}{_spread_text(diff, spread)})"


def findings(rows: list[Row], comparisons: list[Comparison] | None = None,
             spread: SeedSpread | None = None) -> list[str]:
    """One plain sentence per comparison of :data:`~pipeline.evaluation.roles.COMPARISONS` on each
    test set. With ``comparisons`` (paired intervals), a method "beats" another only when its
    interval lies below 0; without them the numbers are given with no verdict."""
    found = {(c.test_set, c.a, c.b): c.diff for c in comparisons or []}
    out = []
    for t in test_sets(rows):
        by = {(r.role, r.backbone): r.results[t].mean for r in rows if t in r.results}
        for a, b in pairs(sorted(k for k in by if k[0] != "mean")):
            c = _CONTRAST[(a[0], b[0])]
            means = f": {c.means}" if c.means else ""
            out.append(f"{t}: {_label(a)} {_versus(found.get((t, a, b)), by[a], by[b], c.against, spread)}{means}.")
        base = next((k for k in by if k[0] == "base"), None)
        if ("mean", "") in by and base is not None:
            out.append(f"{t}: predicting the training mean gives {by[('mean', '')]:.2f}; the base network {by[base]:.2f}.")
    return out


def differences_table(comparisons: list[Comparison], spread: SeedSpread | None = None) -> str:
    """One line per comparison: the mean-MAE difference, its paired 95 % interval and, with a
    measured ``spread``, whether a different training seed could overturn the verdict."""
    head = "| Test set | Comparison | Δ mean MAE | 95 % CI (paired bootstrap) | n | Verdict |"
    rule = "|:---|:---|---:|:---:|---:|:---|"
    if spread is not None:
        head, rule = head + " Seed spread |", rule + ":---|"
    lines = [head, rule]
    for c in comparisons:
        line = (f"| {c.test_set} | {_label(c.a)} − {_label(c.b)} | {c.diff.delta:+.2f} | "
                f"[{c.diff.low:+.2f}, {c.diff.high:+.2f}] | {c.diff.n} | {_VERDICT[c.diff.verdict]} |")
        if spread is not None:
            flip = "could flip with the seed" if spread.could_flip(c.diff.delta) else "beyond 2 seed SDs"
            line += f" ±{spread.delta_sd:.2f}: {flip} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.2f}"


def markdown_table(rows: list[Row]) -> str:
    """Paper Table 5 layout: one row per model, MAE pitch/yaw/roll/mean per test set.

    The best (lowest) mean MAE of each test set is in bold.
    """
    sets = test_sets(rows)
    best = {
        t: min((r.results[t].mean for r in rows if t in r.results and r.role != "mean"), default=None)
        for t in sets
    }
    header = ["Method"] + [f"{t} {c}" for t in sets for c in ("pitch", "yaw", "roll", "MAE")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    for r in rows:
        cells = [r.label]
        for t in sets:
            res = r.results.get(t)
            if res is None:
                cells += ["–"] * 4
                continue
            mean = _fmt(res.mean)
            if best[t] is not None and res.mean == best[t] and len(rows) > 1:
                mean = f"**{mean}**"
            cells += [_fmt(res.pitch), _fmt(res.yaw), _fmt(res.roll), mean]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def caption(rows: list[Row]) -> str:
    """What each kind of row present is, from the role table."""
    present = [name for name in ROLES if any(r.role == name for r in rows)]
    return "; ".join(f"{ROLES[n].short} = {ROLES[n].about}" for n in present) + ". Lower is better; best mean in bold.\n"


def _spread_paragraph(spread: SeedSpread) -> str:
    return (f"\nSeed-to-seed spread ({spread.source}): a student's mean MAE ±{spread.student_sd:.2f}, a paired "
            f"difference between two students ±{spread.delta_sd:.2f} (standard deviations over training seeds). "
            "The intervals here cover the test faces only, not the training seed: a verdict whose |Δ| is below "
            f"about 2 × {spread.delta_sd:.2f} = {2 * spread.delta_sd:.2f} can be overturned by training with a "
            "different seed.\n")


def write_report(metrics_dir: str | os.PathLike[str], out: str | os.PathLike[str],  # one per input/output
                 plot: str | os.PathLike[str] | None = None, extra: list[Row] | None = None,
                 only: list[str] | None = None, errors_dir: str | os.PathLike[str] | None = None,
                 grid_ps: tuple[int, int] | None = None, summary: str | os.PathLike[str] | None = None,
                 spread: SeedSpread | None = None) -> list[Row]:
    """Collect the evaluation metrics (:func:`~pipeline.evaluation.results.collect`) and write the
    Markdown table (and the PNG chart). With ``errors_dir`` (per-face errors), the paired intervals
    of :mod:`pipeline.evaluation.comparisons`, also written as JSON to ``summary`` (a DVC metric).
    With ``spread`` (``--seed-spread``), the seed-to-seed spread beside every verdict."""
    rows = collect(metrics_dir, extra, only)
    errors = row_errors(rows, errors_dir, grid_ps) if errors_dir else None
    comparisons = compare(errors, test_sets(rows)) if errors else []
    diffs = ("\nDifferences in mean MAE (degrees; negative = the first is better), 95 % paired bootstrap "
             "interval over the test faces (2,000 resamples). A difference whose interval contains 0 is not "
             "measurable on this many faces.\n\n" + differences_table(comparisons, spread)) if comparisons else ""
    text = (
        "# Table 5: MAE (degrees) per test set\n\n"
        + markdown_table(rows)
        + "\n" + caption(rows)
        + diffs
        + (_spread_paragraph(spread) if spread is not None else "") + "\n"
        + "".join(f"- {f}\n" for f in findings(rows, comparisons if errors else None, spread))
        + "\nSources: "
        + ", ".join(f"`{src}`" for src in dict.fromkeys(r.source for r in rows)) + "\n"  # each file once
    )
    with atomic_path(out, ".md") as tmp:
        tmp.write_text(text)
    if summary is not None:
        body: dict = {"differences": to_metrics(comparisons)}
        if spread is not None:
            body["seed_spread"] = {"source": spread.source, "student_sd": spread.student_sd,
                                   "delta_sd": spread.delta_sd}
        write_json(summary, body)
    if plot is not None:
        bar_chart(rows, test_sets(rows), plot)
    log.info("report: %d rows, test sets %s -> %s", len(rows), test_sets(rows), out)
    return rows
