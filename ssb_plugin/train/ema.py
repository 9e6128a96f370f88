"""The EMA teacher (`ssb_teacher: online` + `ssb_online_teacher: ema`): an exponential moving average
of the trained adapter, swapped in for the teacher's pass.

The average is kept as one detached copy of each trainable tensor (the adapter's: a LoRA r16 on
SmolLM2-135M is 4.9M values, 20 MB in fp32), updated after every optimizer step,
ema <- decay * ema + (1 - decay) * weights. For the teacher's pass the live weights are saved, the
average copied in, the pass run (adapter on, eval mode, no gradient) and the live weights copied
back bit for bit: a second, temporary copy of the adapter. It starts as the initial adapter (with
LoRA's B = 0: the base model, the `base` teacher). Not in a checkpoint: a resumed run restarts the
average from the resumed weights. Every DDP rank holds the same weights, so the same average.
"""

from __future__ import annotations

import contextlib

import torch

from ssb_plugin.train.online import peft_model


class EmaTeacher:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 <= decay <= 1:
            raise ValueError(f"ssb_ema_decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.params = [p for p in peft_model(model).parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("ssb_online_teacher: ema needs trainable (adapter) weights to average")
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self):
        """The average in place of the live weights, restored exactly afterwards."""
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            try:
                for s, p in zip(self.shadow, self.params, strict=True):
                    p.copy_(s)
                yield
            finally:
                for v, p in zip(live, self.params, strict=True):
                    p.copy_(v)
