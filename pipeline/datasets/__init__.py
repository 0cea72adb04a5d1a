"""Dataset readers into one manifest (DESIGN §3, §7).

- :mod:`pipeline.datasets.manifest`: the manifest schema, ``read_manifest``/``write_manifest``/
  ``read_boxes``, the index configuration and ``build_manifest`` (all readers → one table).
- :mod:`pipeline.datasets.w300lp`: 300W-LP (subset folders) and AFLW2000 (flat) ``.jpg + .mat``.
- :mod:`pipeline.datasets.biwi`: BIWI raw (``hpdb/NN/frame_XXXXX_rgb.png + _pose.txt``) and the
  FSA-Net ``.npz`` variant.
- :mod:`pipeline.datasets.aflw`: AFLW (``aflw.sqlite``).
- :mod:`pipeline.datasets.boxfile`: the paper's published JSON box files.
- :mod:`pipeline.datasets.landmarks`: the face box derived from landmarks.
"""
