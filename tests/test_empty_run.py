"""EmptyRunGuard: zero optimizer steps is a failure, before the first step and at the end.

The real-CLI case (Axolotl's lora-1b example on 4 packed records) is in test_lora_1b_example.py;
here the two checks and the message without packing.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

# transformers (and through it torch) load inside the tests, not when pytest collects this module.


def _guard(train=3, evals=None, **cfg):
    from ssb_plugin.train.empty_run import EmptyRunGuard

    trainer = SimpleNamespace(train_dataset=list(range(train)), eval_dataset=evals)
    return EmptyRunGuard(trainer, {"val_set_size": 0, "sequence_len": 512, **cfg})


ARGS = SimpleNamespace(per_device_train_batch_size=4, world_size=1, gradient_accumulation_steps=1)


def test_empty_dataloader_fails_before_the_first_step_with_the_numbers():
    from transformers import TrainerControl, TrainerState

    from ssb_plugin.train.empty_run import NothingToTrainError

    guard = _guard(train=3)
    with pytest.raises(NothingToTrainError) as err:
        guard.on_train_begin(ARGS, TrainerState(), TrainerControl(), train_dataloader=[])
    msg = str(err.value)
    assert "would take 0 optimizer steps" in msg and "3 train, 0 eval" in msg
    assert "Train micro-batches per epoch: 0" in msg and "lower micro_batch_size" in msg
    assert "sample_packing" not in msg  # not packing: no packing advice
    guard.on_train_begin(ARGS, TrainerState(), TrainerControl(), train_dataloader=[[0, 1]])  # one batch: fine


def test_a_run_that_ended_at_step_zero_fails_and_a_resumed_one_does_not():
    from transformers import TrainerControl, TrainerState

    from ssb_plugin.train.empty_run import NothingToTrainError

    guard = _guard()
    with pytest.raises(NothingToTrainError, match="took 0 optimizer steps"):
        guard.on_train_end(ARGS, TrainerState(global_step=0), TrainerControl(), train_dataloader=None)
    guard.on_train_end(ARGS, TrainerState(global_step=5), TrainerControl(), train_dataloader=None)


def test_an_iterable_dataloader_without_length_is_not_judged_before_training():
    from transformers import TrainerControl, TrainerState

    class Stream:
        def __iter__(self):
            return iter([])

    _guard().on_train_begin(ARGS, TrainerState(), TrainerControl(), train_dataloader=Stream())
