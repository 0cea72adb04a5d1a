"""Core facts every part shares: angle conventions, bin grids, the crop/flip/rotation geometry and
its one View type, image I/O and normalisation, device choice, atomic files and params loading."""
