"""Training settings shared by both stages: :class:`EngineConfig` (what the engine needs to
optimise), :class:`TrainConfig` (the base of the two stages' params sections) and the one
``input_size`` rule (:func:`input_hw`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.model.network import BACKBONES

SCHEDULERS = ("none", "cosine")


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Optimisation settings the engine needs (a stage config provides them via ``.engine()``)."""

    batch_size: int
    epochs: int
    lr: float
    weight_decay: float
    scheduler: str  # "none" | "cosine" (per epoch, to 0 at the last epoch)
    workers: int
    seed: int
    device: str  # "auto" | "cpu" | "cuda" | "cuda:N"
    eval_every: int  # evaluate on the test split every N epochs (and after the last one)
    head_lr_mult: float  # the RvC heads learn at lr * head_lr_mult (trunk, neck, regression head: lr)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1 or self.workers < 0 or self.eval_every < 1:
            raise ValueError(
                f"batch_size ({self.batch_size}), epochs ({self.epochs}), eval_every ({self.eval_every}) must be "
                f">= 1 and workers ({self.workers}) >= 0"
            )
        if not self.lr > 0:
            raise ValueError(f"lr {self.lr!r} must be > 0")
        if not self.head_lr_mult > 0:
            raise ValueError(f"head_lr_mult {self.head_lr_mult!r} must be > 0")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")


def input_hw(value: Any, *, allow_null: bool = False) -> tuple[int, int] | None:
    """The network input (h, w) of an ``input_size`` setting: an int (square) or [h, w] of ints of
    at least 16 pixels, never a bool; ``None`` only where ``allow_null`` (the student's "the
    label store's size")."""
    if value is None and allow_null:
        return None
    hw = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else ()
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in hw):
        null = "null, " if allow_null else ""
        raise ValueError(f"input_size {value!r} must be {null}an int or [h, w] of at least 16 pixels")
    return hw  # type: ignore[return-value]


class TrainConfig:
    """What the two stages' params sections (``Stage1Config``, ``StudentConfig``) share: the
    backbone check, the engine settings (:meth:`engine`) and the checkpoint's config dict
    (:meth:`to_dict`).

    Both declare the shared fields (``backbone``, ``pretrained``, ``weights``, ``input_size``, the
    :class:`EngineConfig` fields but ``progress``, ``feature_norm``, ``photometric``,
    ``datasets``) themselves, in their params order: a dataclass base would put its fields first,
    which would change the key order of the ``config`` dict stored in every checkpoint.
    """

    backbone: str

    def _check_backbone(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")

    def engine(self) -> EngineConfig:
        names = {f.name for f in dataclasses.fields(EngineConfig)} - {"progress"}
        return EngineConfig(**{k: getattr(self, k) for k in names})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


__all__ = ["SCHEDULERS", "EngineConfig", "TrainConfig", "input_hw"]
