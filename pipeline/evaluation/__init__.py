"""Measuring models: MAE per test set (eq. 1), the (p, s) ensemble grid, the Table-5 report and
every figure the pipeline writes (pose grids, bar chart, heat map)."""
