"""Thin click commands, one per DVC stage, collected under the ``hpekd`` console script."""
