"""One training forward for both teachers: batch in, (loss_sum, kd_sum, ce_sum, answer tokens) out.

The body is shared (`distill_forward`): pop the labels and bookkeeping keys, let the teacher's
target maker take its own keys from the batch, run the model once with the kernel
(ssb_plugin.train.loss) inside the lm_head's forward (ssb_plugin.train.sharded) on the student's
answer rows, `labels[:, 1:] != -100`. The teachers differ only in their target maker:
- stored (`stored_target`): the collator's [B, S, W] target rows at those positions, a sparse target;
- online (ssb_plugin.train.online.online_target): the base model's final hidden states on the
  teacher's view of each row, a dense target (exact full-vocabulary KL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ssb_plugin.record import TeacherMode
from ssb_plugin.train.batch_keys import IDS, LOGPROBS, NOT_FORWARD, PAD_ID, SAMPLED, TEMPERATURE, WEIGHTS
from ssb_plugin.train.loss import KLTarget, SparseTarget, kl_sums
from ssb_plugin.train.online import online_target
from ssb_plugin.train.options import LossOptions
from ssb_plugin.train.sharded import forward_with_head_loss

# (model, batch, answer mask [B, S-1], options) -> the target of the student's answer rows [N, H].
# Called before the student's forward: it pops its keys from the batch (and runs any teacher pass,
# so the teacher's activations are gone before the student's accumulate).
TargetMaker = Callable[[torch.nn.Module, dict, torch.Tensor, LossOptions], Callable[[torch.Tensor], KLTarget]]


class ForwardSums(NamedTuple):
    """One forward's loss sums; the trainer divides loss_sum by the step's answer-token count."""

    loss_sum: torch.Tensor  # carries the gradient
    kd_sum: torch.Tensor  # sum_t KL_t (before kd_weight * T^2)
    ce_sum: torch.Tensor  # sum_t CE_t at T = 1
    answer_tokens: int
    outputs: Any  # the model's output; `logits` is the loss's [B, 1, 3] stand-in


def answer_mask(labels: torch.Tensor) -> torch.Tensor:
    """[B, S-1]: position t predicts labels[t+1], an answer token."""
    return labels[:, 1:] != -100


def answer_hidden(model, inputs: dict, labels: torch.Tensor):
    """Run the model without (B, S, V) logits; return (hidden rows [N, H] predicting answer tokens,
    the [B, S-1] mask that picked them, outputs). `inputs` must hold only forward inputs."""
    outputs = model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False, return_dict=True)
    hidden = outputs.hidden_states[-1]  # post-norm final hidden states, [B, S, H]
    mask = answer_mask(labels)
    return hidden[:, :-1][mask], mask, outputs


def stored_target(
    _model: torch.nn.Module, inputs: dict, mask: torch.Tensor, options: LossOptions
) -> Callable[[torch.Tensor], KLTarget]:
    """Take the collator's target rows out of the batch at the answer positions; refuse targets
    built for another temperature or missing at an answer position."""
    built = inputs.pop(TEMPERATURE, None)
    if built is not None and torch.is_tensor(built) and built.numel():
        off = (built.float() - float(options.temperature)).abs().max().item()
        if off > 1e-6:
            raise ValueError(
                f"the batch's targets were built for T={sorted(set(built.tolist()))}, the loss runs at "
                f"T={options.temperature}: the prepared dataset is stale (clear dataset_prepared_path and "
                f"re-run preprocessing)"
            )
    ids, weights, lps = (inputs.pop(key)[:, :-1][mask] for key in (IDS, WEIGHTS, LOGPROBS))
    if ids.numel() and not bool((ids != PAD_ID).any(-1).all()):
        raise ValueError(
            "an answer position has no teacher target: labels and ssb_target_* are misaligned "
            "(was the batch built by ssb_plugin.train.collator.SSBDataCollator?)"
        )
    sampled = inputs.pop(SAMPLED, None)
    target = SparseTarget(ids, weights, lps, None if sampled is None else sampled[:, :-1][mask])
    return lambda _rows: target


TARGET_MAKERS: dict[TeacherMode, TargetMaker] = {
    TeacherMode.STORED: stored_target,
    TeacherMode.ONLINE: online_target,
}


def distill_forward(
    model, inputs: dict, options: LossOptions, make_target: TargetMaker, stats: dict | None = None
) -> ForwardSums:
    """Run the model once on a batch with the loss inside its lm_head; `inputs` is consumed; the answer
    rows' diagnostics are added to `stats` when given (ssb_plugin.train.loss.DIAGNOSTICS)."""
    labels = inputs.pop("labels")
    for stray in NOT_FORWARD:
        inputs.pop(stray, None)
    mask = answer_mask(labels)
    target_for = make_target(model, inputs, mask, options)
    answer_labels = labels[:, 1:][mask]

    def loss_in_head(hidden, weight, bias):  # runs inside the lm_head's forward (ssb_plugin.train.sharded)
        rows = hidden[:, :-1][mask]
        loss_sum, kd_sum, ce_sum = kl_sums(
            rows, weight, target_for(rows), labels=answer_labels, bias=bias, options=options, stats=stats
        )
        if rows.shape[0] == 0:  # all-masked batch: a zero that still reaches every parameter (DDP-safe)
            loss_sum = loss_sum + hidden.sum() * 0.0
        return loss_sum, kd_sum, ce_sum

    (loss_sum, kd_sum, ce_sum), outputs = forward_with_head_loss(model, inputs, loss_in_head)
    return ForwardSums(loss_sum, kd_sum, ce_sum, int(mask.sum()), outputs)


def ssb_forward(model, inputs: dict, options: LossOptions) -> ForwardSums:
    """The stored-target forward (a batch from SSBDataCollator with ssb_target_* keys)."""
    return distill_forward(model, inputs, options, stored_target)


def online_forward(model, inputs: dict, options: LossOptions) -> ForwardSums:
    """The online-teacher forward (a batch with the ssb_teacher_* view; the model has a PEFT adapter)."""
    return distill_forward(model, inputs, options, online_target)
