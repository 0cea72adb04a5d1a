"""Training settings shared by both stages: :class:`EngineConfig`, what the engine needs to optimise."""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULERS = ("none", "cosine")


@dataclass(frozen=True)
class EngineConfig:
    """Optimisation settings the engine needs (a stage config provides them via ``.engine()``)."""

    batch_size: int = 128
    epochs: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "none"  # "none" | "cosine" (per epoch, to 0 at the last epoch)
    workers: int = 4
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    eval_every: int = 1  # evaluate on the test split every N epochs (and after the last one)
    head_lr_mult: float = 1.0  # the RvC heads learn at lr * head_lr_mult (trunk, neck, regression head: lr)
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
