"""Dataset type `ssb_plugin.dataset`: alignment, tokenizer refusal, length filtering, validation."""

from __future__ import annotations

import json
import logging

import pytest
from support.curated_fixture import cached_curated_set

from ssb_plugin.record import RecordError, chat_prompt_ids
from ssb_plugin.train.batch_keys import IDS, LOGPROBS, SAMPLED, TEMPERATURE, WEIGHTS
from ssb_plugin.train.targets import TOPK_TAIL, TargetError, TargetInfo

INFO = TargetInfo(TOPK_TAIL, (1.0, 2.0), 2.0)  # what curated_fixture's sets carry (the curation default)


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
    from ssb_plugin.train.dataset import tokenize_record

    row = raw[1]
    out = tokenize_record(tok, row, INFO, 2.0)
    prompt = chat_prompt_ids(tok, row["student_messages"])
    p, r = len(prompt), len(row["response_ids"])
    assert out["input_ids"] == prompt + list(row["response_ids"])  # ids appended as ids
    assert out["input_ids"][-1] == tok.eos_token_id  # the end-of-turn token is trained
    assert out["labels"] == [-100] * p + list(row["response_ids"])
    assert out["attention_mask"] == [1] * (p + r)
    # targets: the stored top-k then the sampled tail, one row per answer token, mass 1, built for T=2
    k = len(row["teacher_topk_ids"][0])
    assert [x[:k] for x in out[IDS]] == row["teacher_topk_ids"]
    assert [x[k:] for x in out[IDS]] == row["teacher_tail_ids"]
    assert out[TEMPERATURE] == 2.0 and len(out[WEIGHTS]) == r
    assert all(abs(sum(w) - 1) < 1e-5 for w in out[WEIGHTS])
    m = len(row["teacher_tail_ids"][0])
    assert m and out[SAMPLED] == [[0] * k + [1] * m] * r  # the tail samples flagged for the loss


def test_target_top_k_is_the_exact_teacher_probability_at_t(tok, raw):
    import numpy as np

    from ssb_plugin.train.dataset import tokenize_record

    row = raw[0]
    k = len(row["teacher_topk_ids"][0])
    for i, t in enumerate((1.0, 2.0)):
        out = tokenize_record(tok, row, INFO, t)
        lz = np.asarray(row["teacher_log_norm"])[:, i : i + 1]
        want = np.asarray(row["teacher_topk_logprobs"]) / t - lz
        np.testing.assert_allclose(np.asarray(out[LOGPROBS])[:, :k], want, atol=1e-5)
        np.testing.assert_allclose(np.asarray(out[WEIGHTS])[:, :k], np.exp(want), atol=1e-6)


def test_training_at_a_temperature_the_set_does_not_carry_stops(tok, curated, ssb_registered):
    from ssb_plugin.train.dataset import load

    with pytest.raises(TargetError, match=r"T in \[1, 2\].*ssb_temperature=3.*--target-temperatures 1,2,3"):
        load(tok, _cfg(ssb_temperature=3.0), {"path": str(curated)})


def test_an_older_set_without_the_new_fields_warns_once(tok, raw, caplog):
    from ssb_plugin.train.dataset import SSBDatasetStrategy

    older = raw.remove_columns(["teacher_log_norm", "teacher_tail_ids", "teacher_tail_logprobs"])
    with caplog.at_level(logging.WARNING, logger="ssb_plugin.dataset"):
        for _ in range(2):
            ds = SSBDatasetStrategy(tok, sequence_len=4096, source="older-set").wrap_dataset(older)
    warnings = [r for r in caplog.records if "renormalised top-k" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert "outside the stored top-k at T=1" in warnings[0].getMessage()
    assert all(abs(sum(w) - 1) < 1e-5 for row in ds[WEIGHTS] for w in row)  # trains as before


def test_load_refuses_a_different_chat_template(tok, curated, ssb_registered):
    import copy

    from ssb_plugin.train.dataset import SSBDatasetStrategy, load

    other = copy.deepcopy(tok)
    other.chat_template = tok.chat_template.replace("<|im_start|>", "<|im_start|> ")
    with pytest.raises(RecordError, match="chat template"):
        load(other, _cfg(), {"path": str(curated)})
    assert isinstance(load(tok, _cfg(), {"path": str(curated)}), SSBDatasetStrategy)
    # the escape hatch is explicit
    assert isinstance(
        load(other, _cfg(ssb_check_tokenizer=False), {"path": str(curated)}), SSBDatasetStrategy
    )


def test_load_needs_the_plugin_and_a_manifest(tok, curated, tmp_path, ssb_registered):
    from ssb_plugin.train.dataset import load

    with pytest.raises(RecordError, match="plugins"):
        load(tok, _cfg(plugins=[]), {"path": str(curated)})
    with pytest.raises(RecordError, match="manifest"):
        load(tok, _cfg(), {"path": str(tmp_path)})


def test_over_length_rows_are_dropped_and_counted(tok, raw, caplog):
    from ssb_plugin.train.dataset import SSBDatasetStrategy, tokenize_record

    lengths = sorted(len(tokenize_record(tok, r, INFO, 2.0)["input_ids"]) for r in raw)
    assert lengths[0] < lengths[-1]
    strategy = SSBDatasetStrategy(tok, sequence_len=lengths[-1] - 1, target=INFO, source="fixture")
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
    from ssb_plugin.train.dataset import SSBDatasetStrategy

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
    assert m["tokenizer"] == tokenizer_fingerprint(tok) and m["stored_topk"] == 8


def test_the_trainer_module_imports():
    from ssb_plugin.train.trainer import SSBTrainer

    assert SSBTrainer.loss_is_scaled_for_ga
