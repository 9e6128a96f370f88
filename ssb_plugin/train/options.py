"""The loss options, typed, with their defaults declared once (the `ssb_*` keys take them from here).

Kept free of torch/axolotl imports: ssb_plugin.train.args reads the defaults while Axolotl builds its
config classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Divergence = Literal["forward", "reverse", "jsd"]
DIVERGENCES: tuple[str, ...] = get_args(Divergence)


@dataclass(frozen=True)
class LossOptions:
    """What the distillation loss needs besides tensors: built once per run from the `ssb_*` keys."""

    temperature: float = 2.0  # T: teacher and student softened by T; the KD term is multiplied by T^2
    kd_weight: float = 1.0  # weight of the forward KL (x T^2)
    ce_weight: float = 0.0  # weight of cross-entropy on the answer tokens at T = 1 (paper: 0)
    chunk_size: int = 1024  # answer positions per lm_head chunk
    # dense (live) teachers only: forward KL(p || q), reverse KL(q || p), or the generalised JSD
    # beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q
    divergence: Divergence = "forward"
    jsd_beta: float = 0.5
    # dense teachers only: each vocabulary entry's contribution to the divergence capped at this
    # before the vocabulary sum (OPSD's pointwise clip; a capped entry gives no gradient); None: off
    pointwise_clip: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be > 0, got {self.chunk_size}")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        if not 0 < self.jsd_beta < 1:
            raise ValueError(f"jsd_beta must be in (0, 1), got {self.jsd_beta}")
        if self.pointwise_clip is not None and not self.pointwise_clip > 0:
            raise ValueError(f"pointwise_clip must be > 0 (or None: off), got {self.pointwise_clip}")

    @property
    def kd_coef(self) -> float:
        """The factor on sum_t KL_t in the loss: kd_weight * T^2."""
        return float(self.kd_weight) * float(self.temperature) ** 2


DEFAULT_LOSS = LossOptions()
