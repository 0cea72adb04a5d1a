"""Training data: pose-correct geometric views, photometric augmentation, datasets, loaders.

- :mod:`pipeline.data.transforms`: ``geometric`` (crop + flip + rotation with exact pose
  correction), ``random_view``, ``photometric`` (the albumentations list of DESIGN §9),
  ``sample_rng`` (the per-sample, per-epoch generator that makes every run reproducible).
- :mod:`pipeline.data.datasets`: ``PoseDataset`` over ``boxes.parquet`` rows, with a
  ``view_fn`` hook to replay fixed views (the student replays the teacher's views).
- :mod:`pipeline.data.loader`: ``EpochSampler`` and ``make_loader`` (workers, pinned memory,
  persistent workers, DDP sharding, exact resume).
"""
