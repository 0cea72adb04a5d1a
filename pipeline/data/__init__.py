"""Training data for torch: the PoseDataset over boxes.parquet rows, pose-correct geometric and
photometric augmentation, and reproducible, resumable, DDP-aware loaders."""
