"""The lm-eval task files: loading, prompt (no drift from ssb_plugin.prompts), data, scoring.

No model runs here (see test_lm_eval_cli.py); these load the YAMLs through lm-eval's own TaskManager,
so they also pass or fail with the installed lm-eval version (0.4.11 in .venv, 0.4.13 in .venv-vllm).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssb_plugin.grading import grade, paper_match
from ssb_plugin.prompts import SYSTEM_PROMPT, student_messages
from ssb_plugin.tasks import TASKS_DIR, check_data, include_path, main, task_configs

GREEDY = ["ssb_math500", "aime24", "aime25", "ssb_gsm8k"]
SAMPLED = ["aime24_avg16", "aime25_avg16"]
EASY = "ssb_easy_heldout"  # the demo's held-out arithmetic: packaged only, short greedy answers
ADD20 = "ssb_add20_heldout"  # the effect benchmark's: the same kind, a, b <= 20
ROWS = {"ssb_math500": 500, "aime24": 30, "aime25": 30, "ssb_gsm8k": 1319, EASY: 40, ADD20: 200}


@pytest.fixture(scope="module")
def manager():
    """lm-eval's TaskManager with our include path (built once: indexing all tasks is slow)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path())


@pytest.fixture(scope="module")
def loaded(manager):
    """Every SSB task built by lm-eval with no setting: the packaged data."""
    from lm_eval.tasks import get_task_dict

    assert "SSB_DATA_DIR" not in os.environ
    return get_task_dict(GREEDY + SAMPLED + [EASY, ADD20], manager)


@pytest.fixture(scope="module")
def utils():
    """The tasks' utils.py, imported by path the way lm-eval imports it."""
    spec = importlib.util.spec_from_file_location("ssb_task_utils", TASKS_DIR / "utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- include path, console script, symlink ---------------------------------------------------


def test_include_path_is_the_package_dir_and_the_repo_symlink(repo_root, capsys):
    assert main([]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == include_path() == str(TASKS_DIR)
    assert Path(printed).is_absolute() and (Path(printed) / "aime24.yaml").is_file()
    assert (repo_root / "tasks").is_symlink()
    assert (repo_root / "tasks").resolve() == TASKS_DIR


def test_python_dash_m_prints_the_include_path(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ssb_plugin.tasks"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(TASKS_DIR)


def test_every_task_yaml_is_listed_and_package_data_ships_them(repo_root):
    import tomllib

    names = set(task_configs())
    assert names == set(GREEDY + SAMPLED + [EASY, ADD20, "ssb_math"])
    patterns = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["ssb_plugin"]
    assert "tasks/*.yaml" in patterns and "tasks/*.py" in patterns and "tasks/*_yaml" in patterns
    # every include (the shared templates) resolves inside the package
    for cfg in task_configs().values():
        assert Path(cfg["_path"]).parent == TASKS_DIR and "include" not in cfg


def test_check_data(packaged_data, tmp_path, capsys):
    assert check_data(packaged_data) == []
    assert main(["--check-data", str(packaged_data)]) == 0
    (tmp_path / "aime24.jsonl").write_text("not json\n")
    problems = check_data(tmp_path)
    assert any("aime24.jsonl line 1 is not valid JSON" in p for p in problems)
    assert any("math500.jsonl" in p and "missing" in p for p in problems)
    assert main(["--check-data", str(tmp_path)]) == 1


def test_check_data_reads_every_line(packaged_data, tmp_path, capsys):
    """A file whose later lines are broken is not `ok`: every line is read, not only the first."""
    import shutil

    for f in packaged_data.glob("*.jsonl"):
        shutil.copy(f, tmp_path / f.name)
    aime = tmp_path / "aime24.jsonl"
    lines = aime.read_bytes().splitlines(keepends=True)
    no_answer = json.loads(lines[3])
    for key in ("answer", "Answer"):
        no_answer.pop(key, None)
    lines[2] = b'{"Problem": "cut off\n'
    lines[3] = (json.dumps(no_answer) + "\n").encode()
    lines[5] = b'{"Problem": "caf\xe9", "Answer": 1}\n'
    aime.write_bytes(b"".join(lines))
    problems = check_data(tmp_path)
    assert any(f"{aime} line 3 is not valid JSON" in p for p in problems), problems
    assert any(f"{aime} line 4: none of the fields ['answer', 'Answer']" in p for p in problems), problems
    assert any(f"{aime} line 6 is not UTF-8" in p for p in problems), problems
    assert all("aime24" in p for p in problems), problems
    assert main(["--check-data", str(tmp_path)]) == 1
    assert "ok" not in capsys.readouterr().out


# ---- the prompt is the student's format -------------------------------------------------------


def test_description_is_the_system_prompt(loaded):
    for name in GREEDY + SAMPLED + [EASY, ADD20]:
        assert loaded[name].config.description == SYSTEM_PROMPT, name  # as lm-eval built the task
    # ...and no YAML carries a copy that could drift from ssb_plugin.prompts
    texts = [p.read_text() for p in TASKS_DIR.iterdir() if p.name.endswith("yaml")]
    assert len(texts) >= 10 and not any("description:" in t or "expert math tutor" in t for t in texts)


def test_chat_prompt_equals_student_messages(loaded, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)

    def chat_template(messages, add_generation_prompt=True):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    for name, task in loaded.items():
        doc = task.eval_docs[0]
        ctx = task.fewshot_context(doc, 0, apply_chat_template=True, chat_template=chat_template)
        expected = tok.apply_chat_template(
            student_messages(doc["problem"]), tokenize=False, add_generation_prompt=True
        )
        assert ctx == expected, name
        # Without a chat template the instruction still leads, separated from the problem.
        plain = task.fewshot_context(doc, 0)
        assert plain == SYSTEM_PROMPT + "\n\n" + doc["problem"], name
        extra = task.fewshot_context(doc, 0, system_instruction="Be brief.")
        assert extra == "Be brief.\n\n" + SYSTEM_PROMPT + "\n\n" + doc["problem"], name


# ---- the aime24 override ----------------------------------------------------------------------


def _yaml_path(index, name) -> Path:
    entry = index[name]  # a dict in 0.4.11, an Entry in 0.4.13
    return Path(entry["yaml_path"] if isinstance(entry, dict) else entry.yaml_path).resolve()


def test_aime24_replaces_the_builtin_only_under_include_path(loaded, manager):
    from lm_eval.tasks import TaskManager

    plain = TaskManager().task_index
    for name in ("aime24", "aime25"):
        assert _yaml_path(plain, name).parts[-3:] == ("tasks", "aime", f"{name}.yaml")  # lm-eval's own
        assert _yaml_path(manager.task_index, name) == TASKS_DIR / f"{name}.yaml"
        meta = loaded[name].config.metadata
        assert meta["source"] == "ssb-plugin" and f"built-in {name}" in meta["overrides"]
    assert loaded["aime24"].config.dataset_kwargs["local_file"] == "aime24.jsonl"


# ---- generation settings ----------------------------------------------------------------------


def test_generation_is_unbounded_greedy_and_long(loaded):
    for name in GREEDY:
        cfg = loaded[name].config
        gk = cfg.generation_kwargs
        assert gk["until"] == [], name  # the default would stop at the first blank line
        assert gk["do_sample"] is False and gk["temperature"] == 0.0, name
        assert gk["max_gen_toks"] >= 2048, name
        assert cfg.repeats == 1 and cfg.num_fewshot == 0, name


def test_avg_at_k_variant_scores_all_samples(loaded):
    for name in SAMPLED:
        cfg = loaded[name].config
        gk = cfg.generation_kwargs
        assert gk["until"] == [] and gk["do_sample"] is True and gk["temperature"] == 0.6, name
        assert cfg.repeats == 16, name
        (flt,) = cfg.filter_list
        assert flt["filter"] == [{"function": "take_first_k", "k": 16}], name


# ---- data: local files, hub field spellings, clear errors --------------------------------------


def test_local_data_is_complete_and_normalised(loaded):
    for name, rows in ROWS.items():
        docs = loaded[name].eval_docs
        assert len(docs) == rows, name
        assert set(docs.column_names) == {"id", "problem", "answer"}, name
        assert all(isinstance(d["answer"], str) and d["answer"] and d["problem"] for d in docs), name
    assert loaded["ssb_gsm8k"].eval_docs[0]["answer"] == "18"
    assert loaded["aime24"].eval_docs[0]["answer"] == "204"
    assert loaded[EASY].eval_docs[0] == {"id": "0", "problem": "What is 1 + 2?", "answer": "3"}
    assert loaded[ADD20].eval_docs[0] == {"id": "0", "problem": "What is 1 + 3?", "answer": "4"}


def test_hub_spellings_are_normalised(utils):
    import datasets

    # Maxwell-Jia/AIME_2024 spells its columns ID/Problem/Answer (int), unlike the local copy.
    hub = datasets.Dataset.from_list([{"ID": "2024-I-1", "Problem": " P? ", "Answer": 33, "Solution": "s"}])
    assert utils.process_docs(hub)[0] == {"id": "2024-I-1", "problem": "P?", "answer": "33"}
    gsm = datasets.Dataset.from_list([{"question": "Q", "answer": "work\n#### 1,000"}])
    assert utils.process_docs_gsm8k(gsm)[0] == {"id": "0", "problem": "Q", "answer": "1,000"}


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"problem": "P?"}, "doc 1: none of the fields ['answer', 'Answer']"),
        ({"problem": "P?", "answer": None}, "doc 1: none of the fields ['answer', 'Answer']"),
        ({"problem": "P?", "answer": ["5"]}, "doc 1: 'answer' is a list"),
        ({"problem": ["P?"], "answer": "5"}, "doc 1: 'problem' is a list"),
    ],
)
def test_unusable_docs_are_refused_before_generation(utils, bad, problem):
    """The input policy (ssb_plugin.fields) in the lm-eval glue: a doc without a usable answer is
    refused when the task loads, never stringified ("['5']") nor scored as a wrong answer."""
    import re

    with pytest.raises(ValueError, match=re.escape(problem)):
        utils.process_docs([{"problem": "Q?", "answer": "1"}, bad])
    gsm = [{"question": "Q", "answer": "#### 1"}, {"question": "Q2", "answer": 7.5}]
    assert utils.process_docs_gsm8k(gsm)[1]["answer"] == "7.5"
    with pytest.raises(ValueError, match="doc 1: 'answer' is a list"):
        utils.process_docs_gsm8k([gsm[0], {"question": "Q", "answer": ["#### 1"]}])


def test_offline_errors_are_clear(utils, tmp_path, monkeypatch):
    monkeypatch.setenv("SSB_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="aime24.jsonl"):
        utils.load_docs(local_file="aime24.jsonl")
    monkeypatch.setenv("SSB_DATA_DIR", "hub")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="SSB_DATA_DIR"):  # a known hub copy, unreachable offline
        utils.load_docs(local_file="aime24.jsonl", version=1.0)
    with pytest.raises(FileNotFoundError, match="no hub copy is known for 'x.jsonl'"):
        utils.load_docs(local_file="x.jsonl")


# ---- scoring ----------------------------------------------------------------------------------

HUGE = "step " * 200_000 + "\\boxed{204}"
CASES = [
    # (output, gold, exact_match by the grader, paper aime, paper math500)
    ("so \\boxed{204}", "204", 1.0, 1.0, 1.0),
    ("\\boxed{033}", "33", 1.0, 1.0, 0.0),  # the built-in aime24 scorer misses this one
    ("\\boxed{\\frac12}", "\\frac{1}{2}", 1.0, 0.0, 0.0),  # equivalent, not literal
    ("The final answer is 204.", "204", 1.0, 1.0, 0.0),  # unboxed answer phrase
    # the lenient ladder takes the last value of prose (docs/grading.md); paper AIME: substring match
    ("I think 20 or 4, maybe 204", "204", 1.0, 1.0, 0.0),
    ("I think it is 1204.", "204", 0.0, 1.0, 0.0),  # substring match only (lenient paper AIME)
    ("\\boxed{205}", "204", 0.0, 0.0, 0.0),
    ("", "204", 0.0, 0.0, 0.0),
    ("}}{{\\boxed{ \\frac{ $$ \x00 ⊥", "204", 0.0, 0.0, 0.0),  # garbage
    (HUGE, "204", 1.0, 1.0, 1.0),
]


@pytest.mark.parametrize("output,gold,em,paper_aime,paper_math", CASES, ids=range(len(CASES)))
def test_process_results(utils, output, gold, em, paper_aime, paper_math):
    doc = {"id": "x", "problem": "p", "answer": gold}
    start = time.monotonic()
    assert utils.process_results_aime(doc, [output]) == {"exact_match": em, "paper_match": paper_aime}
    assert utils.process_results_math500(doc, [output]) == {"exact_match": em, "paper_match": paper_math}
    assert utils.process_results_gsm8k(doc, [output]) == {"exact_match": em}
    assert time.monotonic() - start < 10
    # Same verdict as the grader itself (what ssb-grade writes) and the paper protocol functions.
    assert em == float(grade(output, gold).correct)
    assert paper_aime == float(paper_match(output, gold, "aime"))


def test_process_results_tolerates_non_strings(utils):
    doc = {"id": "x", "problem": "p", "answer": "5"}
    assert utils.process_results_math500(doc, [None]) == {"exact_match": 0.0, "paper_match": 0.0}


def test_avg_at_k(utils):
    doc = {"id": "x", "problem": "p", "answer": "204"}
    samples = ["\\boxed{204}", "\\boxed{0204}", "\\boxed{7}", "", "204 is wrong, \\boxed{1}", "x", "y", "z"]
    scores = utils.process_results_aime_avg(doc, [samples])
    assert scores == {"avg_at_k": 2 / 8, "pass_at_k": 1.0, "paper_avg_at_k": 3 / 8}
    assert utils.process_results_aime_avg(doc, [["no", "nope"]]) == {
        "avg_at_k": 0.0,
        "pass_at_k": 0.0,
        "paper_avg_at_k": 0.0,
    }


def test_hub_when_selected(utils, monkeypatch):
    """SSB_DATA_DIR=hub: every task asks `datasets` for its usual hub id and split."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"problem": "p", "answer": "1"}])

    monkeypatch.setenv("SSB_DATA_DIR", "hub")
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    for name in GREEDY:
        kwargs = task_configs()[name]["dataset_kwargs"]
        # lm-eval passes the metadata (and, on 0.4.13, the model arguments) along.
        docs = utils.load_docs(**kwargs, version=1.0, pretrained="m")
        assert list(docs) == ["test"]
    assert calls == [
        ("HuggingFaceH4/MATH-500", None, "test"),
        ("Maxwell-Jia/AIME_2024", None, "train"),
        ("math-ai/aime25", None, "test"),
        ("openai/gsm8k", "main", "test"),
    ]


def test_easy_heldout_scores_with_the_last_number_fallback(utils):
    """The demo's task accepts an unboxed final number (as its curation does); so does the lenient
    grader behind every task (docs/grading.md), and a wrong number stays wrong in both."""
    doc = {"id": "0", "problem": "What is 1 + 2?", "answer": "3"}
    assert utils.process_results_easy(doc, ["1 plus 2 makes 3"]) == {"exact_match": 1.0}
    assert utils.process_results_easy(doc, ["1 plus 2 makes 4"]) == {"exact_match": 0.0}
    assert utils.process_results_easy(doc, [None]) == {"exact_match": 0.0}
    assert utils.process_results_gsm8k(doc, ["1 plus 2 makes 3"]) == {"exact_match": 1.0}
    assert utils.process_results_gsm8k(doc, ["1 plus 2 makes 4"]) == {"exact_match": 0.0}
