"""Bounding-box relabeling (paper §4.2): face detectors behind one interface, the rule that picks
the labelled face, the per-chunk cache and the boxes.parquet writer with its summary."""
