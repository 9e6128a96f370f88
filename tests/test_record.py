"""The record schema, manifest and tokenizer fingerprint (the contract curation and training share)."""

import json

import pytest

from ssb_plugin.prompts import student_messages
from ssb_plugin.record import (
    Manifest,
    RecordError,
    chat_prompt_ids,
    check_tokenizer,
    features,
    response_input,
    student_input,
    tokenizer_fingerprint,
    validate_record,
)


def _row(r=3, k=2):
    return {
        "id": "gsm8k/train/0",
        "question": "What is 2 + 3?",
        "gold": "5",
        "student_messages": student_messages("What is 2 + 3?"),
        "teacher_messages": student_messages("hinted"),
        "response_ids": list(range(10, 10 + r)),
        "teacher_topk_ids": [[1, 2]] * r,
        "teacher_topk_logprobs": [[-0.1, -2.0]] * r,
    }


def test_validate_record_accepts_a_well_formed_row():
    validate_record(_row())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("response_ids"), "missing field"),
        (lambda r: r.__setitem__("teacher_topk_ids", [[1, 2]] * 2), "one top-k row per response token"),
        (lambda r: r.__setitem__("teacher_topk_logprobs", [[-0.1, -2.0], [-1.0], [-0.1, -2.0]]), "row 1"),
        (lambda r: r.__setitem__("response_ids", []), "empty response_ids"),
    ],
)
def test_validate_record_names_the_problem(mutate, message):
    row = _row()
    mutate(row)
    with pytest.raises(RecordError, match=message) as err:
        validate_record(row, where="shard-00000.parquet row 7")
    assert "row 7" in str(err.value)


def test_features_round_trip_through_datasets():
    from datasets import Dataset

    row = _row()
    row.update(
        response_text="5",
        rollouts=[{"text": "5", "answer": "5", "correct": True, "finish_reason": "stop"}],
        correct_index=0,
        wrong_index=1,
        wrong_answer="6",
        wrong_count=1,
        teacher_log_norm=[[0.0, 1.5]] * 3,
        teacher_tail_ids=[[7, 9, 9]] * 3,
        teacher_tail_logprobs=[[-5.0, -6.0, -6.0]] * 3,
    )
    ds = Dataset.from_list([row], features=features())
    back = ds[0]
    assert back["response_ids"] == row["response_ids"]
    assert back["teacher_topk_ids"] == row["teacher_topk_ids"]
    assert ds.features["teacher_topk_logprobs"].feature.feature.dtype == "float32"
    assert (
        back["teacher_tail_ids"] == row["teacher_tail_ids"]
        and back["teacher_log_norm"] == row["teacher_log_norm"]
    )


def test_manifest_save_load_and_refusals(tmp_path):
    m = Manifest(model="m", stored_topk=8, counts={"kept": 3}, target={"kind": "topk+tail"})
    m.save(tmp_path)
    assert Manifest.load(tmp_path) == m
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "m", "k": 16, "schema_version": 1}))
    assert Manifest.load(tmp_path).stored_topk == 16  # written before the rename
    (tmp_path / "manifest.json").write_text(json.dumps({"k": 3}))
    with pytest.raises(RecordError, match="missing key 'model'"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "m", "schema_version": 999}))
    with pytest.raises(RecordError, match="newer"):
        Manifest.load(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(RecordError, match="no manifest.json"):
        Manifest.load(tmp_path / "data")


def test_alignment_prompt_then_response_ids(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = _row(r=4)
    ids, p = student_input(tok, row)
    assert ids[:p] == chat_prompt_ids(tok, row["student_messages"])
    assert ids[p:] == row["response_ids"]
    # the prompt ends with the generation prompt, so position p-1 predicts response_ids[0]
    assert tok.decode(ids[:p]).endswith("<|im_start|>assistant\n")
    # the teacher's view: its own (hinted) prompt, the same response ids after it
    t_ids, t_p = response_input(tok, row["teacher_messages"], row["response_ids"])
    assert t_ids[:t_p] == chat_prompt_ids(tok, row["teacher_messages"]) != ids[:p]
    assert t_ids[t_p:] == row["response_ids"]


def test_tokenizer_check_refuses_another_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    manifest = Manifest(model="tiny", tokenizer=tokenizer_fingerprint(tok))
    check_tokenizer(tok, manifest)
    tok.chat_template = tok.chat_template.replace("<|im_start|>", "<|im_start|> ")
    with pytest.raises(RecordError, match="chat template differs"):
        check_tokenizer(tok, manifest)
