"""SSBDataCollator: teacher rows land on the positions predicting each answer token, padded or packed."""

from __future__ import annotations

import pytest
import torch

from ssb_plugin.train.batch_keys import IDS, LOGPROBS, PAD_ID, TEMPERATURE, WEIGHTS


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _row(prompt_len, resp, k=3, base=0):
    """A synthetic row: teacher row j holds ids (base+j, ...) so its position can be read back."""
    ids = list(range(10, 10 + prompt_len)) + resp
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [-100] * prompt_len + resp,
        IDS: [[base + j] * k for j in range(len(resp))],
        WEIGHTS: [[1.0 / k] * k for j in range(len(resp))],
        LOGPROBS: [[-float(j)] * k for j in range(len(resp))],
        TEMPERATURE: 2.0,
    }


def test_rows_are_placed_at_p_minus_1_plus_j_and_padded(tok):
    from ssb_plugin.train.collator import SSBDataCollator

    a, b = _row(4, [50, 51, 52]), _row(2, [60, 61], k=2, base=100)
    batch = SSBDataCollator(tok, pad_to_multiple_of=8)([a, b])
    assert batch["input_ids"].shape == (2, 8) and batch[IDS].shape == (2, 8, 3)
    # row a: P=4, R=3 -> positions 3,4,5 hold teacher rows 0,1,2
    assert batch[IDS][0, 3:6, 0].tolist() == [0, 1, 2]
    assert (batch[IDS][0, :3] == PAD_ID).all() and (batch[IDS][0, 6:] == PAD_ID).all()
    # row b: k=2 padded to 3 with PAD_ID
    assert (
        batch[IDS][1, 1:3, :2].tolist() == [[100, 100], [101, 101]]
        and (batch[IDS][1, 1:3, 2] == PAD_ID).all()
    )
    # the trainer's mask (labels[t+1] != -100) selects exactly the placed rows
    mask = batch["labels"][:, 1:] != -100
    assert ((batch[IDS][:, :-1, 0] != PAD_ID) == mask).all()
    assert batch[LOGPROBS].dtype == torch.float32 and batch[IDS].dtype == torch.long


def test_left_padding(tok):
    import copy

    from ssb_plugin.train.collator import SSBDataCollator

    left = copy.deepcopy(tok)
    left.padding_side = "left"
    batch = SSBDataCollator(left)([_row(4, [50, 51, 52]), _row(2, [60])])
    mask = batch["labels"][:, 1:] != -100
    assert ((batch[IDS][:, :-1, 0] != PAD_ID) == mask).all()
    assert batch[IDS][1, -2, 0].item() == 0


def test_packed_bins_restart_positions_and_keep_targets(tok):
    from ssb_plugin.train.collator import SSBDataCollator

    def pos(r):
        return {**r, "position_ids": list(range(len(r["input_ids"])))}

    a, b, c = pos(_row(3, [50, 51])), pos(_row(2, [60, 61, 62], base=10)), pos(_row(4, [70], base=20))
    batch = SSBDataCollator(tok)([[a, b], [c]])
    assert batch["input_ids"].shape[0] == 2
    assert batch["position_ids"][0, :10].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    # a occupies 0..4 (targets at 2,3); b occupies 5..9 (targets at 6,7,8)
    assert batch[IDS][0, :10, 0].tolist() == [PAD_ID, PAD_ID, 0, 1, PAD_ID, PAD_ID, 10, 11, 12, PAD_ID]
    mask = batch["labels"][:, 1:] != -100
    assert ((batch[IDS][:, :-1, 0] != PAD_ID) == mask).all()


def test_mismatch_between_labels_and_rows_is_an_error(tok):
    from ssb_plugin.train.collator import SSBDataCollator

    bad = _row(3, [50, 51])
    bad[IDS] = bad[IDS][:1]
    with pytest.raises(ValueError, match="2 answer positions but 1 rows of ssb_target_ids"):
        SSBDataCollator(tok)([bad])
    with pytest.raises(KeyError, match="ssb_plugin.dataset"):
        SSBDataCollator(tok)([{k: v for k, v in _row(3, [5]).items() if k not in (IDS, LOGPROBS)}])
