"""The output projection: found on any wrapped model, and the loss run inside its own forward.

The loss runs inside the output projection's own forward, where every engine has its parameters.

DeepSpeed ZeRO-3 gathers a module's parameters for that module's forward and releases them right
after; FSDP keeps a unit's parameters only as its resharding policy says (FSDP2 with
`reshard_after_forward=True`, or an lm_head wrapped as its own unit, leaves a DTensor shard behind).
So `lm_head.weight` read after `model(...)` has returned is an empty placeholder or a shard under
sharding. Instead, for one call, the head's forward is replaced by the loss: it receives the final
hidden states [B, S, H] (`logits_to_keep=0`: every position, a view), computes the chunked loss with
the weight as it is gathered at that moment, and returns the sums as a tiny [B, 1, 3] "logits"
tensor. The engines' backward hooks sit on that output, so they gather the head again for its
backward; the loss itself needs no weight there (its autograd Function made the input gradients in
forward). A plain model takes the same path, so the tested path is the shipped path.

The engines' own hooks are untouched: only the innermost forward is swapped (accelerate's
`_old_forward` when accelerate hooks the head, FSDP1's wrapped module when the head is its own unit).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

# (final hidden states [B, S, H], head weight, head bias) -> (loss_sum, kd_sum, ce_sum)
HeadLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], tuple]
_UNSET = object()


def resolve_lm_head(model: torch.nn.Module) -> torch.nn.Module:
    """The output projection module (PEFT, DDP and multimodal wrappers unwrapped)."""
    base: Any = model  # wrappers' attributes resolve at run time
    for attr in ("module", "_orig_mod"):  # DDP / torch.compile
        base = getattr(base, attr, base)
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    emb = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if isinstance(emb, torch.nn.Module):
        return emb
    head = getattr(base, "lm_head", None)
    if isinstance(head, torch.nn.Module):
        return head
    raise AttributeError(f"no lm_head / output embeddings found on {type(model).__name__}")


def lm_head_params(head: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of the lm_head; a LoRA-wrapped head is not supported (its delta would be ignored)."""
    if hasattr(head, "base_layer") and hasattr(head, "lora_A"):
        raise NotImplementedError(
            "a LoRA adapter on lm_head is not supported by the SSB loss (it reads the head's weight directly); "
            "drop lm_head from lora_target_modules"
        )
    weight = head.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(head).__name__}.weight is a {type(weight).__name__}, not a tensor")
    return weight, getattr(head, "bias", None)


def head_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose forward runs with the output projection's parameters gathered."""
    head = resolve_lm_head(model)
    return getattr(head, "_fsdp_wrapped_module", head)  # FSDP1: the wrapper gathers, the inner runs


@contextmanager
def _loss_as_head(head: torch.nn.Module, loss_fn: HeadLoss, seen: list):
    """Swap the head's innermost forward for `loss_fn` for the duration of the block."""
    attr = "_old_forward" if "_old_forward" in head.__dict__ else "forward"  # accelerate keeps its hook
    saved = head.__dict__.get(attr, _UNSET)

    def forward(hidden_states, *args, **kwargs):
        weight, bias = lm_head_params(head)
        sums = torch.stack([s.reshape(()).float() for s in loss_fn(hidden_states, weight, bias)])
        seen.append(sums.detach().clone())
        return sums.view(1, 1, 3).repeat(hidden_states.shape[0], 1, 1)  # not a view: engines hook it

    setattr(head, attr, forward)
    try:
        yield
    finally:
        if saved is _UNSET:
            delattr(head, attr)
        else:
            setattr(head, attr, saved)


def forward_with_head_loss(model: torch.nn.Module, inputs: dict, loss_fn: HeadLoss):
    """Run `model(**inputs)` once with the loss computed inside its output projection.

    Returns ((loss_sum, kd_sum, ce_sum), outputs); loss_sum carries the gradient. `outputs.logits` is
    the [B, 1, 3] stand-in, not logits.
    """
    seen: list = []
    with _loss_as_head(head_module(model), loss_fn, seen):
        outputs = model(**inputs, logits_to_keep=0, use_cache=False, return_dict=True)
    if len(seen) != 1:
        raise RuntimeError(
            f"the model called its output projection {len(seen)} times in one forward (expected once): "
            "the SSB loss cannot be placed inside it"
        )
    packed = outputs.logits[0, 0]
    if packed.shape != (3,) or not torch.equal(packed.detach().float(), seen[0].to(packed.device)):
        raise RuntimeError(
            f"{type(model).__name__} transforms its lm_head output (logit soft-capping or scaling?): the "
            "SSB loss scores lm_head(h) directly and would be wrong for this model"
        )
    return (packed[0], seen[0][1], seen[0][2]), outputs
