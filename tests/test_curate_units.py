"""Unit tests of curation pieces that need no model: selection, outcomes, config, problems, writer."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ssb_plugin.curate.backends import derive_seed
from ssb_plugin.curate.config import ConfigError, CurateConfig
from ssb_plugin.curate.problems import BadRow, Problem, load_problems, parse_gold
from ssb_plugin.curate.select import Rollout, choose, teacher_outcome


def R(answer, correct, reason=None):
    reason = reason or ("no_answer" if answer is None else "match" if correct else "mismatch")
    return Rollout(text=f"text {answer}", answer=answer, correct=correct, finish_reason="stop", reason=reason)


# ---------------------------------------------------------------------------- selection


def test_choose_picks_first_correct_and_most_common_wrong():
    rs = [R("3", False), R("7", True), R("5", False), R("5", False), R("7", True)]
    outcome, c = choose(rs)
    assert outcome is None
    assert (c.correct_index, c.wrong_index, c.wrong_answer, c.wrong_count) == (1, 2, "5", 2)


def test_choose_ties_go_to_the_first_seen_wrong_answer():
    rs = [R("9", True), R("4", False), R("2", False), R("2", False), R("4", False)]
    _, c = choose(rs)
    assert (c.wrong_index, c.wrong_answer, c.wrong_count) == (1, "4", 2)
    # order decides, not the value
    _, c2 = choose([rs[0], rs[2], rs[1], rs[3], rs[4]])
    assert c2.wrong_answer == "2"


def test_choose_groups_equivalent_wrong_answers():
    rs = [R("9", True), R("4", False), R("18", False), R("18.0", False)]
    _, plain = choose(rs)
    assert plain.wrong_answer == "4"  # string grouping: all three wrong answers differ
    _, grouped = choose(rs, same_answer=lambda a, b: float(a) == float(b))
    assert (grouped.wrong_answer, grouped.wrong_count, grouped.wrong_index) == ("18", 2, 2)


def test_curation_groups_wrong_answers_by_the_graders_equivalence():
    from types import SimpleNamespace

    from ssb_plugin.curate.chunk import Curator
    from ssb_plugin.curate.config import CurateConfig

    curator = Curator(CurateConfig(out="x"), SimpleNamespace(tokenizer=None, max_model_len=None))
    assert curator.same_answer("18", "18.0") and curator.same_answer("\\frac{1}{2}", "0.5")
    assert not curator.same_answer("18", "19")
    rs = [R("9", True), R("4", False), R("18", False), R("18.0", False)]
    _, choice = choose(rs, same_answer=curator.same_answer)
    assert (choice.wrong_answer, choice.wrong_count) == ("18", 2)


@pytest.mark.parametrize(
    "rollouts, outcome",
    [
        ([R(None, False), R(None, False)], "no_boxed_answer"),
        ([R(None, False), R("3", False)], "no_correct"),
        ([R("4", True), R(None, False), R("4", True)], "no_wrong"),
        # a grader timeout is neither correct nor wrong
        ([R("4", True), R("x", False, reason="timeout")], "no_wrong"),
        ([R("4", False, reason="timeout"), R("4", False, reason="error")], "no_correct"),
    ],
)
def test_choose_drop_outcomes(rollouts, outcome):
    assert choose(rollouts) == (outcome, None)


def test_answerless_rollout_is_never_chosen_as_wrong():
    _, c = choose([R(None, False), R("1", True), R("2", False)])
    assert (c.correct_index, c.wrong_index) == (1, 2)


@pytest.mark.parametrize(
    "finish, correct, leaks, outcome",
    [
        ("length", True, False, "too_long"),
        ("stop", False, False, "teacher_wrong"),
        ("stop", False, True, "teacher_wrong"),
        ("stop", True, True, "leak_filtered"),
        ("stop", True, False, "kept"),
    ],
)
def test_teacher_outcome(finish, correct, leaks, outcome):
    assert teacher_outcome(finish, correct, leaks) == outcome


def test_leak_filter_examples():
    from ssb_plugin.prompts import leaks_hint

    assert leaks_hint("The student forgot to carry the one.")
    assert leaks_hint("As the incorrect solution shows, adding first is wrong.")
    assert not leaks_hint("A common mistake is to add before multiplying. The answer is \\boxed{7}.")


def test_seeds_are_stable_and_distinct():
    assert derive_seed(0, "p:1", "rollout", 0) == derive_seed(0, "p:1", "rollout", 0)
    seeds = {
        derive_seed(0, f"p:{i}", role, j)
        for i in range(50)
        for role in ("rollout", "teacher")
        for j in range(4)
    }
    assert len(seeds) == 400
    assert derive_seed(1, "p:1", "rollout", 0) != derive_seed(0, "p:1", "rollout", 0)
    assert all(0 <= s < 2**31 for s in seeds)


# ---------------------------------------------------------------------------- config


def test_config_file_and_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("out: o\nnum-rollouts: 6\nteacher_temperature: 0.2\n")
    cfg = CurateConfig.build(CurateConfig.from_file(f), num_rollouts=8, out=str(tmp_path / "x"))
    assert (cfg.num_rollouts, cfg.teacher_temperature, cfg.out) == (8, 0.2, str(tmp_path / "x"))


@pytest.mark.parametrize(
    "override, key",
    [
        ({"num_rollouts": 1}, "num_rollouts"),
        ({"rollout_temperature": 0}, "rollout_temperature"),
        ({"teacher_temperature": -1}, "teacher_temperature"),
        ({"stored_topk": 0}, "stored_topk"),
        ({"tail_samples": -1}, "tail_samples"),
        ({"target_temperatures": [2.0, 0]}, "target_temperatures"),
        ({"shard": "2/2"}, "shard"),
        ({"shard": "a/b"}, "shard"),
        ({"backend": "tgi"}, "backend"),
        ({"data": "/nonexistent/x.jsonl"}, "data"),
        ({"model": "/nonexistent/model"}, "model"),
        ({"limit": 0}, "limit"),
        ({"out": ""}, "out"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"grade_timeout": 0}, "grade_timeout"),
        ({"grade_timeout": float("nan")}, "grade_timeout"),
        ({"grade_timeout": float("inf")}, "grade_timeout"),  # grade() refuses it: refused up front
    ],
)
def test_config_rejects_bad_values(tmp_path, override, key):
    base = {"out": str(tmp_path / "o")}
    with pytest.raises(ConfigError, match=key):
        CurateConfig.build(base, **override)


def test_config_file_unknown_key(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"out": "o", "temprature": 1}))
    with pytest.raises(ConfigError, match="temprature"):
        CurateConfig.from_file(f)


def test_cli_bad_config_fails_before_model_load(tmp_path, capsys, monkeypatch):
    from ssb_plugin.curate import cli, pipeline

    monkeypatch.setattr(pipeline, "make_backend", lambda *a: pytest.fail("model loaded"))
    data = tmp_path / "d.jsonl"
    data.write_text('{"q": "What is 1 + 1?", "answer": "#### 2"}\n')
    rc = cli.main(["--out", str(tmp_path / "o"), "--data", str(data), "--num-rollouts", "1"])
    assert rc == 2 and "num_rollouts" in capsys.readouterr().err
    rc = cli.main(
        ["--out", str(tmp_path / "o"), "--data", str(data), "--backend", "transformers", "--model", "x/y"]
    )
    assert rc == 2 and "question_field" in capsys.readouterr().err  # column 'question' is missing


# ---------------------------------------------------------------------------- problems


@pytest.mark.parametrize(
    "value, fmt, gold",
    [
        ("4 + 5 = 9\n#### 9", "auto", "9"),
        ("so \\boxed{\\frac{1}{2}}.", "auto", "\\frac{1}{2}"),
        (70, "auto", "70"),
        (" 12 ", "plain", "12"),
        ("no marker", "gsm8k", None),
        ("#### ", "auto", None),
        (None, "auto", None),
        ("", "plain", None),
    ],
)
def test_parse_gold(value, fmt, gold):
    assert parse_gold(value, fmt) == gold


def test_load_problems_counts_bad_rows_and_checks_fields(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [
        {"problem": "What is 1 + 1?", "sol": "#### 2"},
        {"problem": "", "sol": "#### 3"},
        {"problem": "What is 4 + 4?", "sol": "#### 8"},
        {"problem": "What is 2 + 2?", "sol": "no gold here"},
        {"problem": "What is 3 + 3?", "sol": "\\boxed{6}"},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = CurateConfig.build(
        {}, out=str(tmp_path / "o"), data=str(data), question_field="problem", answer_field="sol"
    )
    items = load_problems(cfg)
    assert [type(x) for x in items] == [Problem, BadRow, Problem, Problem, Problem]
    assert items[3].gold == "no gold here"  # auto: plain text is a plain gold
    cfg.gold_format = "gsm8k"
    items = load_problems(cfg)
    assert [type(x) for x in items] == [Problem, BadRow, Problem, BadRow, BadRow]
    assert items[0].id == "d.jsonl:0" and items[0].gold == "2"
    cfg.question_field = "question"
    with pytest.raises(ConfigError, match="'question' not found.*problem"):
        load_problems(cfg)


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"sol": "#### 3"}, "row 1: no 'problem' field"),
        ({"problem": None, "sol": "#### 3"}, "row 1: 'problem' is null"),
        ({"problem": ["What?"], "sol": "#### 3"}, "row 1: 'problem' is a list"),
        ({"problem": "What?", "sol": [5]}, "row 1: 'sol' is a list, expected a string or a number"),
        ({"problem": "What?", "sol": True}, "row 1: 'sol' is a boolean"),
    ],
)
def test_load_problems_refuses_unusable_fields(tmp_path, row, problem):
    """Policy of ssb_plugin.fields: a missing/null/wrong-typed field is refused naming the row, never
    stringified into a gold (a list [5] must not become the gold '[5]')."""
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"problem": "What is 1 + 1?", "sol": "#### 2"}) + "\n" + json.dumps(row) + "\n"
    )
    cfg = CurateConfig.build(
        {}, out=str(tmp_path / "o"), data=str(data), question_field="problem", answer_field="sol"
    )
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_problems(cfg)


def test_load_problems_parquet_limit_and_bad_json(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"question": ["a?", "b?", "c?"], "answer": ["1", "2", "3"]}), p)
    cfg = CurateConfig.build({}, out=str(tmp_path / "o"), data=str(p), limit=2)
    assert [x.gold for x in load_problems(cfg)] == ["1", "2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a?", "answer": "1"}\n{oops\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_problems(CurateConfig.build({}, out=str(tmp_path / "o"), data=str(bad)))


# ---------------------------------------------------------------------------- writer


def _fake_row(i, R=5, k=4):
    rng = np.random.default_rng(i)
    return {
        "id": f"x:{i}",
        "question": "q?",
        "gold": "1",
        "student_messages": [{"role": "user", "content": "q?"}],
        "teacher_messages": [{"role": "user", "content": "hint"}],
        "response_text": "a",
        "response_ids": list(range(R)),
        "teacher_topk_ids": rng.integers(0, 1000, (R, k)).astype(np.int32),
        "teacher_topk_logprobs": rng.normal(size=(R, k)).astype(np.float32),
        "teacher_log_norm": rng.normal(size=(R, 2)).astype(np.float32),
        "teacher_tail_ids": rng.integers(0, 1000, (R, 3)).astype(np.int32),
        "teacher_tail_logprobs": rng.normal(size=(R, 3)).astype(np.float32),
        "rollouts": [{"text": "t", "answer": "1", "correct": True, "finish_reason": "stop"}],
        "correct_index": 0,
        "wrong_index": 1,
        "wrong_answer": "2",
        "wrong_count": 1,
    }


def test_shard_round_trip_exact_and_loadable(tmp_path):
    import datasets

    from ssb_plugin.curate.writer import OutputDir, dataset_card
    from ssb_plugin.record import Manifest, features, validate_record

    out = OutputDir(tmp_path / "o")
    out.prepare({"a": 1})
    rows = [_fake_row(i, R=3 + i) for i in range(3)]
    out.write_chunk(0, rows, {"counts": {"kept": 3}})
    out.write_chunk(1, [], {"counts": {"no_correct": 2}})
    m = Manifest(model="m", counts={"kept": 3, "no_correct": 2}, stored_topk=4)
    out.write_manifest(m)
    # no `configs:` block: with one, datasets caches a local dir regardless of file mtimes
    assert "configs:" not in dataset_card(json.loads(m.to_json()))
    ds = datasets.load_dataset(str(tmp_path / "o"), split="train")
    assert ds.features == features()
    assert len(ds) == 3 and sorted(out.done_chunks()) == [0, 1]
    for got, want in zip(ds, rows, strict=True):
        validate_record(got)
        np.testing.assert_array_equal(np.asarray(got["teacher_topk_ids"]), want["teacher_topk_ids"])
        for key in ("teacher_topk_logprobs", "teacher_log_norm", "teacher_tail_ids", "teacher_tail_logprobs"):
            np.testing.assert_array_equal(np.asarray(got[key], dtype=want[key].dtype), want[key])
    # re-curating into the same directory: load_dataset must see the new rows, not a cached copy
    out.prepare({"a": 1}, overwrite=True)
    out.write_chunk(0, rows[:1], {"counts": {"kept": 1}})
    assert len(datasets.load_dataset(str(tmp_path / "o"), split="train")) == 1


def test_output_dir_refuses_other_settings(tmp_path):
    from ssb_plugin.curate.writer import OutputDir

    OutputDir(tmp_path).prepare({"seed": 0})
    OutputDir(tmp_path).prepare({"seed": 0})  # same settings: resume
    with pytest.raises(ConfigError, match="seed"):
        OutputDir(tmp_path).prepare({"seed": 1})
    OutputDir(tmp_path).prepare({"seed": 1}, overwrite=True)


def test_push_to_hub_uploads_only_the_set(tmp_path):
    from ssb_plugin.curate.hub import push
    from ssb_plugin.record import Manifest

    Manifest(model="m", extra={"complete": False}).save(tmp_path)
    with pytest.raises(ConfigError, match="not complete"):
        push(str(tmp_path), "me/set")
    Manifest(model="m", extra={"complete": True}, counts={"kept": 2}).save(tmp_path)
    calls = []

    class Api:
        def create_repo(self, *a, **k):
            calls.append(("create", a, k))

        def upload_folder(self, **k):
            calls.append(("upload", k))

    assert push(str(tmp_path), "me/set", api=Api()).endswith("datasets/me/set")
    assert calls[0][2]["repo_type"] == "dataset"
    assert (
        ".ssb-progress/*" not in calls[1][1]["allow_patterns"]
        and "data/*.parquet" in calls[1][1]["allow_patterns"]
    )


# ---------------------------------------------------------------------------- sharding and merge


def test_chunk_plan_splits_chunks_round_robin(tmp_path):
    from ssb_plugin.curate.run import chunk_plan

    items = list(range(10))
    plans = []
    for i in range(3):
        cfg = CurateConfig.build({}, out=str(tmp_path / "o"), chunk_size=2, shard=f"{i}/3")
        plans.append(chunk_plan(items, cfg))
    assert [[c for c, _ in p] for p in plans] == [[0, 3], [1, 4], [2]]
    assert sorted(x for p in plans for _, part in p for x in part) == items  # a partition, nothing lost


def _shard_run(root, shard, chunks, counts, settings):
    from ssb_plugin.curate.writer import OutputDir
    from ssb_plugin.record import Manifest

    out = OutputDir(root)
    out.prepare({"s": 1})
    for c in chunks:
        out.write_chunk(c, [_fake_row(c)], {"counts": {"kept": 1}})
    m = Manifest(
        model="m",
        counts=counts,
        timings={"rollout_generate_s": 1.0},
        source={"shard": shard},
        extra={"complete": True, "settings": settings, "stats": {"kept_tokens": 5 * len(chunks)}},
    )
    out.write_manifest(m)
    return root


def test_merge_sums_counts_and_collects_shards(tmp_path):
    import datasets

    from ssb_plugin.curate.merge import merge

    a = _shard_run(tmp_path / "a", "0/2", [0, 2], {"kept": 2, "no_correct": 3}, {"seed": 0})
    b = _shard_run(tmp_path / "b", "1/2", [1], {"kept": 1, "no_correct": 1}, {"seed": 0})
    m = merge([str(a), str(b)], str(tmp_path / "m"))
    assert {k: v for k, v in m.counts.items() if v} == {"kept": 3, "no_correct": 4}
    assert m.timings["rollout_generate_s"] == 2.0 and m.extra["stats"]["kept_tokens"] == 15
    ds = datasets.load_dataset(str(tmp_path / "m"), split="train")
    assert sorted(ds["id"]) == ["x:0", "x:1", "x:2"]
    with pytest.raises(ConfigError, match="holds an ssb-curate set; use --overwrite"):
        merge([str(a), str(b)], str(tmp_path / "m"))
    c = _shard_run(tmp_path / "c", "1/2", [1], {"kept": 1}, {"seed": 1})
    with pytest.raises(ConfigError, match="other settings.*seed"):
        merge([str(a), str(c)], str(tmp_path / "m2"))
    with pytest.raises(ConfigError, match="distinct shards"):
        merge([str(a), str(a)], str(tmp_path / "m3"))
