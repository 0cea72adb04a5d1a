"""params.yaml section ``relabel``: :class:`RelabelConfig` and its checks (the sources and
rules are described in :mod:`pipeline.relabel.job`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.config import OPTIONAL
from pipeline.relabel.sources import BOX_SOURCES

SOURCES = tuple(BOX_SOURCES)  # detector | landmarks | file | table
FALLBACKS = ("none", "landmarks")


@dataclass(frozen=True, kw_only=True)
class RelabelConfig:
    """params.yaml section ``relabel``."""

    source: str            # detector | landmarks | file | table: every dataset not in `sources`
    sources: Mapping[str, str]  # dataset -> its own source (e.g. file for published boxes)
    detector: str             # yunet | mtcnn (source: detector)
    score_threshold: float        # detections below this score are ignored
    detector_options: Mapping[str, Any]  # extra backend kwargs
    fallback: str              # none | landmarks
    min_overlap: float            # min overlap (∩ / smaller area) of the chosen detection with the tight landmark extent
    min_iou: float | None = field(default=None, metadata=OPTIONAL)  # retired: replaced by min_overlap (an error if set)
    min_box_size: float  # px of width/height a clipped box must keep
    box_files: Mapping[str, str]  # dataset -> JSON (source: file)
    workers: int                    # processes; 0 = all cores, 1 = in this process
    chunk_size: int                # images per task / per cache part

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"relabel.source must be one of {SOURCES}, got {self.source!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"relabel.fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"relabel.score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.min_iou is not None:
            raise ValueError("relabel.min_iou was replaced by relabel.min_overlap (intersection over the smaller "
                             "area of the detection and the tight landmark extent, default 0.5): rename the key")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise ValueError(f"relabel.min_overlap must be in [0, 1], got {self.min_overlap}")
        if self.min_box_size < 0:
            raise ValueError(f"relabel.min_box_size must be >= 0, got {self.min_box_size}")
        if self.workers < 0:
            raise ValueError(f"relabel.workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.chunk_size < 1:
            raise ValueError(f"relabel.chunk_size must be >= 1, got {self.chunk_size}")
        if not isinstance(self.detector_options, Mapping) or not isinstance(self.box_files, Mapping):
            raise ValueError("relabel.detector_options and relabel.box_files must be mappings")
        if not isinstance(self.sources, Mapping):
            raise ValueError("relabel.sources must be a mapping of dataset name -> source")
        for ds, src in self.sources.items():
            if src not in SOURCES:
                raise ValueError(f"relabel.sources.{ds} must be one of {SOURCES}, got {src!r}")
            if src == "file" and ds not in self.box_files:
                raise ValueError(f"relabel.sources.{ds} is 'file' but relabel.box_files has no entry {ds!r}: "
                                 "map it to its JSON box file")
        if self.source == "file" and not self.box_files:
            raise ValueError("relabel.source is 'file' but relabel.box_files is empty: "
                             "map each dataset name to its JSON box file")

    def source_for(self, dataset: str) -> str:
        """The box source of ``dataset``: its entry in ``sources``, else ``source``."""
        return str(self.sources.get(dataset, self.source))

    def file_box_files(self) -> dict[str, str]:
        """``box_files`` restricted to the datasets whose source is ``file`` (a box file listed
        for a dataset with another source is not read)."""
        return {str(ds): str(path) for ds, path in self.box_files.items() if self.source_for(str(ds)) == "file"}
