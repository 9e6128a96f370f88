"""Dataset type `ssb_plugin.dataset`: alignment, tokenizer refusal, length filtering, validation."""

from __future__ import annotations

import json
import logging

import pytest
from support.curated_fixture import cached_curated_set

from ssb_plugin.record import RecordError, chat_prompt_ids
from ssb_plugin.train.dataset import IDS, LOGPROBS, SSBDatasetStrategy, load, tokenize_record
from ssb_plugin.train.trainer import DEFAULTS  # noqa: F401  (the trainer module must import cleanly)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def curated(tiny_model_dir, tmp_path_factory):
    return cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=8)


@pytest.fixture(scope="module")
def raw(curated):
    from datasets import load_dataset

    return load_dataset(str(curated), split="train")


def _cfg(**kw):
    from axolotl.utils.dict import DictDefault

    return DictDefault({"plugins": ["ssb_plugin.SSBPlugin"], "sequence_len": 4096, **kw})


def test_student_ids_labels_and_targets_follow_the_contract(tok, raw):
    row = raw[1]
    out = tokenize_record(tok, row)
    prompt = chat_prompt_ids(tok, row["student_messages"])
    p, r = len(prompt), len(row["response_ids"])
    assert out["input_ids"] == prompt + list(row["response_ids"])  # ids appended as ids
    assert out["input_ids"][-1] == tok.eos_token_id  # the end-of-turn token is trained
    assert out["labels"] == [-100] * p + list(row["response_ids"])
    assert out["attention_mask"] == [1] * (p + r)
    assert out[IDS] == row["teacher_topk_ids"] and out[LOGPROBS] == row["teacher_topk_logprobs"]


def test_topk_option_keeps_the_most_likely_entries(tok, raw):
    row = dict(raw[0])
    # reverse each row so the most likely entry is last: truncation must sort, not slice
    row["teacher_topk_ids"] = [list(reversed(x)) for x in row["teacher_topk_ids"]]
    row["teacher_topk_logprobs"] = [list(reversed(x)) for x in row["teacher_topk_logprobs"]]
    out = tokenize_record(tok, row, topk=3)
    assert out[IDS] == [list(x[:3]) for x in raw[0]["teacher_topk_ids"]]
    assert all(len(x) == 3 for x in out[LOGPROBS])


def test_load_refuses_a_different_chat_template(tok, curated):
    import copy

    other = copy.deepcopy(tok)
    other.chat_template = tok.chat_template.replace("<|im_start|>", "<|im_start|> ")
    with pytest.raises(RecordError, match="chat template"):
        load(other, _cfg(), {"path": str(curated)})
    assert isinstance(load(tok, _cfg(), {"path": str(curated)}), SSBDatasetStrategy)
    # the escape hatch is explicit
    assert isinstance(
        load(other, _cfg(ssb_check_tokenizer=False), {"path": str(curated)}), SSBDatasetStrategy
    )


def test_load_needs_the_plugin_and_a_manifest(tok, curated, tmp_path):
    with pytest.raises(RecordError, match="plugins"):
        load(tok, _cfg(plugins=[]), {"path": str(curated)})
    with pytest.raises(RecordError, match="manifest"):
        load(tok, _cfg(), {"path": str(tmp_path)})


def test_over_length_rows_are_dropped_and_counted(tok, raw, caplog):
    lengths = sorted(len(tokenize_record(tok, r)["input_ids"]) for r in raw)
    assert lengths[0] < lengths[-1]
    strategy = SSBDatasetStrategy(tok, sequence_len=lengths[-1] - 1, source="fixture")
    with caplog.at_level(logging.WARNING, logger="ssb_plugin.dataset"):
        ds = strategy.wrap_dataset(raw)
    n_long = sum(n > lengths[-1] - 1 for n in lengths)
    assert len(ds) == len(raw) - n_long and strategy.stats["too_long"] == n_long
    assert max(len(x) for x in ds["input_ids"]) <= lengths[-1] - 1  # nothing truncated, only dropped
    assert all(len(i) == sum(x != -100 for x in lab) for i, lab in zip(ds[IDS], ds["labels"], strict=True))
    assert (
        "dropped 1 of 4 rows longer than sequence_len" in caplog.text
        and strategy.stats["too_long_ids"][0] in caplog.text
    )
    with pytest.raises(RecordError, match="every row is longer"):
        SSBDatasetStrategy(tok, sequence_len=5).wrap_dataset(raw)


def test_bad_rows_are_named(tok, raw):
    broken = raw.map(
        lambda r, i: {"teacher_topk_ids": r["teacher_topk_ids"][:-1] if i == 2 else r["teacher_topk_ids"]},
        with_indices=True,
    )
    with pytest.raises(RecordError, match=r"src row 2 .*one top-k row per response token"):
        SSBDatasetStrategy(tok, sequence_len=4096, source="src").wrap_dataset(broken)
    with pytest.raises(RecordError, match="teacher_topk_logprobs"):
        SSBDatasetStrategy(tok, sequence_len=4096).wrap_dataset(raw.remove_columns("teacher_topk_logprobs"))


def test_manifest_is_what_the_fixture_claims(curated, tok):
    from ssb_plugin.record import tokenizer_fingerprint

    m = json.loads((curated / "manifest.json").read_text())
    assert m["tokenizer"] == tokenizer_fingerprint(tok) and m["k"] == 8
