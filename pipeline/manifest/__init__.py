"""Datasets into one table: the manifest schema (manifest.parquet, boxes.parquet), one reader per
dataset format (300W-LP, AFLW2000, BIWI, AFLW), the landmark box and the published box files."""
