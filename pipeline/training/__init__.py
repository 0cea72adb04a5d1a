"""Training: the shared engine (epochs, AMP, DDP, checkpoints, resume, metrics) and the two
recipes built on it, stage 1 (teacher) and stage 2 (student on cached soft labels)."""
