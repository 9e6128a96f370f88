"""Fail a training run that would take no optimizer step, with the numbers that explain why.

A small set with `sample_packing` can pack into fewer bins than one micro-batch needs; the packing
sampler drops the incomplete batch, the train dataloader is empty, and without this check the Trainer
ran zero steps and Axolotl reported "Training completed! ... Model successfully saved" for an adapter
that never changed. A failure (non-zero exit) rather than a warning: nothing useful was produced, and
a pipeline running `axolotl train && evaluate` must not evaluate an untrained adapter as if trained.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

from ssb_plugin.train.config_value import cfg_value

LOG = logging.getLogger("ssb_plugin.empty_run")


class NothingToTrainError(RuntimeError):
    """The run would end (or ended) without a single optimizer step."""


class EmptyRunGuard(TrainerCallback):
    """Checks the prepared train dataloader before the first step and the step count at the end."""

    def __init__(self, trainer, cfg: Any):
        self.trainer = trainer
        self.cfg = cfg

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        batches = _length(train_dataloader)
        if batches == 0:
            self._fail(args, train_dataloader, batches, "would take")

    def on_train_end(self, args, state, control, train_dataloader=None, **kwargs):
        # A resumed run may legitimately start at its last step; a run that never stepped may not end well.
        if state.global_step == 0:
            self._fail(args, train_dataloader, _length(train_dataloader), "took")

    def _fail(self, args, dataloader, batches: int | None, verb: str) -> None:
        msg = f"this run {verb} 0 optimizer steps, so it trains nothing. " + explain(
            self.trainer, self.cfg, args, dataloader, batches
        )
        LOG.error("SSB: %s", msg)
        raise NothingToTrainError(msg)


def explain(trainer, cfg: Any, args, dataloader, batches: int | None) -> str:
    """The numbers from the records to the steps, and what to change."""
    train = _length(getattr(trainer, "train_dataset", None))
    evals = _length(getattr(trainer, "eval_dataset", None))
    packing = bool(cfg_value(cfg, "sample_packing"))
    parts = [
        f"Records after the length filter and the val_set_size={cfg_value(cfg, 'val_set_size')} split: "
        f"{train} train, {evals or 0} eval."
    ]
    if packing:
        sampler = _multipack_sampler(dataloader)
        bins = _packed_bins(sampler) if sampler is not None else "?"
        # Axolotl packs either micro_batch_size bins of sequence_len ("real batches", e.g. sdpa) or one
        # bin of micro_batch_size x sequence_len (flash attention): the sampler knows which.
        capacity = getattr(sampler, "batch_max_len", "?")
        per_batch = getattr(sampler, "batch_size", "?")
        parts.append(
            f"sample_packing packs the train records into {bins} bin(s) of {capacity} tokens "
            f"(sequence_len={cfg_value(cfg, 'sequence_len')}); a micro-batch takes {per_batch} bin(s) "
            f"(micro_batch_size={args.per_device_train_batch_size}) and an incomplete one is dropped."
        )
    parts.append(
        f"Train micro-batches per epoch: {batches if batches is not None else 'unknown'} (per process, "
        f"world_size={args.world_size}); gradient_accumulation_steps={args.gradient_accumulation_steps}; "
        f"optimizer steps: 0."
    )
    fixes = ["add records", "lower micro_batch_size"]
    if packing:
        fixes.append("set sample_packing: false")
    if evals:
        fixes.append("lower val_set_size (or 0)")
    parts.append("Fix: " + ", or ".join(fixes) + ".")
    return " ".join(parts)


def _multipack_sampler(dataloader):
    """Axolotl's MultipackBatchSampler behind the (accelerate-prepared) train dataloader, if any."""
    sampler = getattr(dataloader, "batch_sampler", None)
    sampler = getattr(sampler, "batch_sampler", sampler)  # accelerate's BatchSamplerShard wraps it
    return sampler if hasattr(sampler, "generate_batches") and hasattr(sampler, "drop_last") else None


def _packed_bins(sampler) -> int | str:
    """All bins the sampler makes, the incomplete last micro-batch included."""
    drop, cached = sampler.drop_last, getattr(sampler, "_batches", None)
    try:
        sampler.drop_last, sampler._batches = False, None
        return sum(len(batch) for batch in sampler.generate_batches())
    except Exception:  # a diagnostic only: never mask the real error with one of our own
        return "?"
    finally:
        sampler.drop_last, sampler._batches = drop, cached


def _length(obj) -> int | None:
    try:
        return len(obj) if obj is not None else None
    except TypeError:  # an iterable dataset / dataloader without a length
        return None
