"""hpekd library: datasets, geometry, models, the convolutional ensemble and the label store."""

__version__ = "0.1.0"
