"""Test helpers: tiny datasets, checkpoints, detectors and stores made in tmp_path, and the static
import graph used by the layout tests."""
