"""The record schema, manifest and tokenizer fingerprint (the contract curation and training share)."""

import json

import pytest

from ssb_plugin.prompts import student_messages
from ssb_plugin.record import (
    COLUMNS,
    NESTED_FIELDS,
    ONLINE_FIELDS,
    OUTCOMES,
    REQUIRED_FIELDS,
    TARGET_FIELDS,
    Manifest,
    Need,
    Outcome,
    RecordError,
    StoredTarget,
    TargetError,
    TargetKind,
    chat_prompt_ids,
    check_tokenizer,
    features,
    kept_record,
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
    target = {"kind": "topk+tail", "temperatures": [1.0, 2.0], "tail_temperature": 2.0}
    m = Manifest(model="m", stored_topk=8, counts={"kept": 3}, target=target)
    m.save(tmp_path)
    assert Manifest.load(tmp_path) == m
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "m", "k": 16, "schema_version": 1}))
    old = Manifest.load(tmp_path)  # schema 1: `k`, no `target`
    assert old.stored_topk == 16 and old.target == StoredTarget()
    assert json.loads(old.to_json())["target"] == {}
    (tmp_path / "manifest.json").write_text(json.dumps({"k": 3}))
    with pytest.raises(RecordError, match="missing key 'model'"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "m", "schema_version": 999}))
    with pytest.raises(RecordError, match="newer"):
        Manifest.load(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(RecordError, match="no manifest.json"):
        Manifest.load(tmp_path / "data")


def test_shard_schema_is_pinned():
    """The on-disk layout, spelled out a second time on purpose: a change to COLUMNS that alters the
    shard bytes (a column, its type or its place) fails here."""
    schema = features().arrow_schema
    message = "list<item: struct<role: string, content: string>>"
    nested_int, nested_float = "list<item: list<item: int32>>", "list<item: list<item: float>>"
    rollout = "list<item: struct<text: string, answer: string, correct: bool, finish_reason: string>>"
    assert [(f.name, str(f.type)) for f in schema] == [
        ("id", "string"),
        ("question", "string"),
        ("gold", "string"),
        ("student_messages", message),
        ("teacher_messages", message),
        ("response_text", "string"),
        ("response_ids", "list<item: int32>"),
        ("teacher_topk_ids", nested_int),
        ("teacher_topk_logprobs", nested_float),
        ("teacher_log_norm", nested_float),
        ("teacher_tail_ids", nested_int),
        ("teacher_tail_logprobs", nested_float),
        ("rollouts", rollout),
        ("correct_index", "int32"),
        ("wrong_index", "int32"),
        ("wrong_answer", "string"),
        ("wrong_count", "int32"),
    ]


def test_field_lists_derive_from_the_column_table():
    names = [c.name for c in COLUMNS]
    assert list(features()) == names
    assert REQUIRED_FIELDS == (*ONLINE_FIELDS, "teacher_topk_ids", "teacher_topk_logprobs")
    assert ONLINE_FIELDS == ("id", "question", "gold", "student_messages", "teacher_messages", "response_ids")
    assert TARGET_FIELDS == ("teacher_log_norm", "teacher_tail_ids", "teacher_tail_logprobs")
    assert NESTED_FIELDS == ("teacher_topk_ids", "teacher_topk_logprobs", *TARGET_FIELDS)
    # curation's row before its targets plus the nested target columns is exactly the shard
    choice = type("Choice", (), dict(correct_index=0, wrong_index=1, wrong_answer="6", wrong_count=1))
    row = kept_record(
        id="a",
        question="q",
        gold="5",
        student_messages=[],
        teacher_messages=[],
        response_text="",
        response_ids=[1],
        rollouts=[],
        choice=choice,
    )
    assert sorted([*row, *NESTED_FIELDS]) == sorted(names)
    assert all(c.need != Need.PROVENANCE for c in COLUMNS if c.name in REQUIRED_FIELDS)


def test_vocabularies_keep_their_json_values():
    assert [str(o) for o in OUTCOMES] == [
        "kept",
        "bad_input",
        "no_correct",
        "no_wrong",
        "no_boxed_answer",
        "teacher_wrong",
        "leak_filtered",
        "too_long",
    ]
    assert json.dumps({Outcome.KEPT: 1, "x": [TargetKind.TOPK_TAIL]}) == '{"kept": 1, "x": ["topk+tail"]}'


def test_stored_target_round_trips_and_reads():
    written = {
        "kind": "topk+tail",
        "logprobs": "raw",
        "stored": True,
        "stored_topk": 32,
        "tail_sampling": "systematic",
        "tail_samples": 92,
        "tail_temperature": 2.0,
        "temperatures": [1.0, 2.0],
    }
    t = StoredTarget.from_dict(written)
    assert json.dumps(t.to_dict(), sort_keys=True) == json.dumps(written, sort_keys=True)  # as to_json writes
    assert StoredTarget.from_manifest(Manifest(model="m", target=t)) == StoredTarget(
        TargetKind.TOPK_TAIL, (1.0, 2.0), 2.0
    )
    assert t.index(2.0) == 1
    with pytest.raises(TargetError, match="--target-temperatures 1,2,0.7"):
        t.index(0.7)
    online_only = {
        "kind": "none",
        "stored": False,
        "stored_topk": 32,
        "tail_samples": 92,
        "temperatures": [1.0],
    }
    assert StoredTarget.from_dict(online_only).to_dict() == online_only
    assert StoredTarget.from_manifest(Manifest(model="m", target=online_only)) == StoredTarget()
    no_tail_t = Manifest(model="m", target={"kind": "topk+tail", "temperatures": [1.0, 3.0]})
    assert StoredTarget.from_manifest(no_tail_t).tail_temperature == 3.0


@pytest.mark.parametrize(
    "target, message",
    [
        ({"kind": "topk"}, "target.kind 'topk'"),
        ({"kind": "topk+tail"}, "target.temperatures is empty"),
        ({"kind": "topk+tail", "temperatures": [1.0], "tails": 3}, r"unknown key\(s\) \['tails'\]"),
    ],
)
def test_stored_target_refusals_name_the_key(tmp_path, target, message):
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "m", "target": target}))
    with pytest.raises(RecordError, match=message) as err:
        Manifest.load(tmp_path)
    assert "manifest.json" in str(err.value)


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
