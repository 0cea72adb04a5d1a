"""Key names of the JSON files the evaluation stages write and the Table-5 report reads.

One home for both sides: ``hpekd evaluate`` (:mod:`pipeline.evaluation.evaluate`) and
``hpekd ensemble-grid`` (:mod:`pipeline.evaluation.ensemble_grid`) build their JSON from these
names, and :mod:`pipeline.evaluation.report` accepts exactly these and nothing else.

``hpekd evaluate`` → ``metrics/eval/<role>-<backbone>.json``::

    {"kind", "backbone", "split", "datasets": {"<test set>": BLOCK}, "all": BLOCK}

with BLOCK = ``mae_*``, ``mae_mean``, ``slope_*``, ``r_*``, ``n``, ``dropped`` and, when the
boxes have usable training rows, ``baseline_mae_*`` + ``baseline_mae_mean``.

``hpekd ensemble-grid`` → ``metrics/ensemble_grid.json``::

    {"p_max", "s", "best", "single", "rows": [GRID_ROW, …]}

with GRID_ROW = ``dataset``, ``p``, ``s``, ``A``, ``n``, ``mae_*``, ``mae_mean``.
"""

from __future__ import annotations

from pipeline.core.angles import ANGLES

# --- hpekd evaluate: top level
KIND = "kind"  # checkpoint kind: "stage1" or "student"
BACKBONE = "backbone"
SPLIT = "split"
DATASETS = "datasets"  # test set -> BLOCK
ALL = "all"  # BLOCK over every selected row
EVAL_KEYS = (KIND, BACKBONE, SPLIT, DATASETS, ALL)

# --- one BLOCK (also the MAE part of a grid row)
MAE = {a: f"mae_{a}" for a in ANGLES}  # angle -> key of its MAE (degrees, eq. 1)
MAE_MEAN = "mae_mean"
SLOPE = {a: f"slope_{a}" for a in ANGLES}  # least-squares slope of predicted on true
PEARSON = {a: f"r_{a}" for a in ANGLES}
BASELINE = {a: f"baseline_mae_{a}" for a in ANGLES}  # MAE of predicting the training mean
BASELINE_MEAN = "baseline_mae_mean"
N = "n"
DROPPED = "dropped"
BLOCK_KEYS = (*MAE.values(), MAE_MEAN, *SLOPE.values(), *PEARSON.values(), N, DROPPED)  # always written
BASELINE_KEYS = (*BASELINE.values(), BASELINE_MEAN)  # written together, or not at all

# --- hpekd ensemble-grid
GRID_P_MAX = "p_max"
GRID_STRIDES = "s"
GRID_BEST = "best"  # test set -> its best row
GRID_SINGLE = "single"  # test set -> mae_mean of the single network (p = 0)
GRID_ROWS = "rows"
GRID_KEYS = (GRID_P_MAX, GRID_STRIDES, GRID_BEST, GRID_SINGLE, GRID_ROWS)
ROW_DATASET = "dataset"
ROW_P = "p"
ROW_S = "s"
ROW_SIZE = "A"  # ensemble size
GRID_ROW_KEYS = (ROW_DATASET, ROW_P, ROW_S, ROW_SIZE, N, *MAE.values(), MAE_MEAN)  # CSV column order
