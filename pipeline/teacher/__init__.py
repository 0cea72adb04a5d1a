"""Teacher labels (docs/design.md §5-6): the convolutional ensemble cut on the device, the sharded Zarr
label store with provenance, and the batched (dask) job that fills it."""
