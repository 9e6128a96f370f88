"""The GRPO baseline recipe: data prep in TRL's format, the grader as reward, a config Axolotl accepts."""

from __future__ import annotations

import json

import pytest
import yaml

from ssb_plugin.prompts import student_messages
from ssb_plugin.train.grpo import correctness_reward, main, prepare


def test_prepare_gsm8k_rows(shared_data, tmp_path):
    out = tmp_path / "grpo.jsonl"
    assert (
        main(
            ["prepare", "--input", str(shared_data / "gsm8k_train.jsonl"), "--out", str(out), "--limit", "3"]
        )
        == 0
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    first = json.loads((shared_data / "gsm8k_train.jsonl").read_text().splitlines()[0])
    assert len(rows) == 3 and rows[0]["gold"] == "72"
    assert rows[0]["prompt"] == student_messages(first["question"])  # the same prompt SSB trains on
    with pytest.raises(ValueError, match="row 0"):
        prepare([{"answer": "1"}])


def test_reward_is_the_grader():
    completions = [
        [{"role": "assistant", "content": "So the total is \\boxed{72}."}],
        [{"role": "assistant", "content": "So the total is \\boxed{71}."}],
        "plain text \\boxed{\\frac{1}{2}}",
    ]
    assert correctness_reward([None] * 3, completions, gold=["72", "72", "0.5"]) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="gold"):
        correctness_reward([None], ["x"])


def test_grpo_recipe_validates(repo_root):
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    cfg = yaml.safe_load((repo_root / "recipes" / "grpo_qwen3b.yml").read_text())
    assert cfg["trl"]["reward_funcs"] == ["ssb_plugin.grpo.correctness_reward"]
    valid = validate_config(DictDefault(cfg))
    assert valid.rl == "grpo" and valid.trl.num_generations == 8
    from axolotl.core.trainers.grpo import GRPOStrategy

    assert GRPOStrategy.get_reward_func(cfg["trl"]["reward_funcs"][0]) is correctness_reward
