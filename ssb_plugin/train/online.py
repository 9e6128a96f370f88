"""The online teacher (`ssb_teacher: online`): exact full-vocabulary forward KL at T, no stored targets.

Each step, before the student's forward, the same model with its LoRA adapter disabled (the base
model = the curating teacher) runs in eval mode without gradient on the teacher's view of each row,
chat(teacher_messages) + response_ids. Only its final (post-norm) hidden states are kept (a hook on
the decoder; no (B, S, V) logits, no per-layer hidden states), gathered at the teacher's answer
positions to [N, H]. The student's are gathered the same way ([N, H], same N, same order: the
collator pairs them). The loss is, per answer position t,

    KL_t = sum_v p_v (log p_v - log q_v),  p = softmax(z_teacher / T), q = softmax(z_student / T),

over the whole vocabulary, x T^2, summed (the trainer divides by the step's answer-token count):
`online_target` is the dense target (ssb_plugin.train.loss.DenseTarget) that the shared forward
(ssb_plugin.train.forward) scores, where both logit rows come from the same lm_head, chunk by chunk
in fp32, so at most a few [chunk, V] buffers exist and the student's logit gradient is formed at
once and pushed through the head, as for stored targets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ssb_plugin.train.batch_keys import TEACHER_PREFIX
from ssb_plugin.train.loss import DenseTarget, KLTarget
from ssb_plugin.train.options import LossOptions


def peft_model(model: torch.nn.Module) -> torch.nn.Module:
    """The PEFT model inside DDP / torch.compile wrappers; the online teacher needs its adapter switch."""
    core = model
    for attr in ("module", "_orig_mod"):
        core = getattr(core, attr, core)
    if not hasattr(core, "disable_adapter"):
        raise ValueError(
            "ssb_teacher: online needs a PEFT adapter (`adapter: lora` or `qlora`): the teacher is the base "
            f"model with the adapter disabled; got {type(core).__name__}"
        )
    return core


@contextlib.contextmanager
def _as_teacher(core: torch.nn.Module, ema=None):
    """Adapter off (or, with an EMA teacher, its average swapped in: ssb_plugin.train.ema), eval mode
    (no dropout, no checkpointing), no autograd graph; training mode restored."""
    was_training = core.training
    core.eval()
    weights = core.disable_adapter() if ema is None else ema.swapped_in()  # type: ignore[operator]  # PEFT's
    try:
        with torch.no_grad(), weights:
            yield
    finally:
        core.train(was_training)


def teacher_hidden(model: torch.nn.Module, teacher_inputs: dict, ema=None) -> torch.Tensor:
    """Final (post-norm) hidden states [B, S_t, H] of the base model on the teacher's batch, without gradient.

    The call goes through `model` (so DDP/FSDP wrappers see it); a forward hook on the decoder keeps
    only its last hidden state, and `logits_to_keep=1` keeps the head to one position."""
    core = peft_model(model)
    decoder = core.get_base_model().get_decoder()  # type: ignore[operator]  # PEFT's, via Module.__getattr__
    got = {}

    def grab(_module, _args, out):
        got["h"] = out[0]  # last_hidden_state (ModelOutput or tuple)

    handle = decoder.register_forward_hook(grab)
    try:
        with _as_teacher(core, ema):
            model(**teacher_inputs, logits_to_keep=1, use_cache=False, return_dict=True)
    finally:
        handle.remove()
    return got["h"]


def split_teacher_inputs(inputs: dict) -> dict:
    """Pop the `ssb_teacher_*` keys from a batch: the teacher's own input_ids, labels, position_ids, ..."""
    keys = [k for k in inputs if k.startswith(TEACHER_PREFIX)]
    if not keys:
        raise KeyError(
            f"ssb_teacher: online needs the teacher's view in the batch ({TEACHER_PREFIX}input_ids, ...); got "
            f"{sorted(inputs)}: was the dataset tokenised with `ssb_teacher: online` (clear dataset_prepared_path)?"
        )
    return {k[len(TEACHER_PREFIX) :]: inputs.pop(k) for k in keys}


def online_target(
    model: torch.nn.Module, inputs: dict, mask: torch.Tensor, _options: LossOptions, ema=None
) -> Callable[[torch.Tensor], KLTarget]:
    """Pop the teacher's view from the batch and run the teacher on it (the base model, or the EMA
    teacher `ema`); the target of the student's answer rows (`mask`, [B, S-1]) is the teacher's
    hidden states at its own answer positions, in order."""
    t_inputs = split_teacher_inputs(inputs)
    t_labels = t_inputs.pop("labels")
    t_rows = teacher_hidden(model, t_inputs, ema)[:, :-1][t_labels[:, 1:] != -100]
    n = int(mask.sum())
    if n != t_rows.shape[0]:
        raise ValueError(
            f"{n} student answer positions but {t_rows.shape[0]} teacher ones: the batch was not "
            f"built by ssb_plugin.train.collator.SSBDataCollator from one tokenisation"
        )
    return lambda rows: DenseTarget(t_rows.to(rows.dtype))  # the student's dtype, as its head sees it
