"""End to end: the real Axolotl CLI trains with SSBPlugin on curated sets; the adapter loads and generates.

- composition: an ordinary Axolotl SFT config trains; the same config plus the two SSB additions
  (`plugins: [ssb_plugin.SSBPlugin]`, a `type: ssb_plugin.dataset` dataset) trains with the SSB loss,
  via the real `axolotl train` launcher, with sample packing and an eval split;
- the CPU recipe (recipes/ssb_smollm2_cpu.yml) on the embedded SmolLM2 with a set curated by it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from support.axolotl_cli import axolotl_ok as _axolotl
from support.axolotl_cli import check_adapter as _check_adapter
from support.axolotl_cli import check_diagnostics, training_log
from support.axolotl_cpu import train_config
from support.curated_fixture import cached_curated_set, one_thread

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _sft_jsonl(curated: Path, out: Path) -> Path:
    """An ordinary chat SFT file (same questions and answers) for the plain-Axolotl baseline config."""
    from datasets import load_dataset

    rows = load_dataset(str(curated), split="train")
    with out.open("w") as f:
        for r in rows:
            msgs = list(r["student_messages"]) + [{"role": "assistant", "content": r["response_text"]}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    return out


def test_sft_config_plus_two_additions_trains_with_real_cli(tiny_model_dir, tmp_path, tmp_path_factory):
    curated = cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=8, k=8)
    sft_data = {
        "path": str(_sft_jsonl(curated, tmp_path / "sft.jsonl")),
        "ds_type": "json",
        "type": "chat_template",
        "field_messages": "messages",
    }
    sft = train_config(tiny_model_dir, curated, tmp_path / "sft", plugins=None, datasets=[sft_data])
    _axolotl(sft, tmp_path / "sft", launcher=False)
    _check_adapter(tiny_model_dir, Path(sft["output_dir"]))  # plain SFT trained the adapter...
    assert training_log(sft) == []  # ...without the plugin (its log file is the plugin's)

    # The two additions (plus packing and an eval split, to exercise both collator paths).
    ssb = train_config(
        tiny_model_dir,
        curated,
        tmp_path / "ssb",
        sample_packing=True,
        val_set_size=0.5,  # >= 2 packed eval batches: the multipack eval sampler drops a partial one
        eval_strategy="steps",
        eval_steps=2,
    )
    assert {k: v for k, v in ssb.items() if sft.get(k) != v} == {
        "plugins": ["ssb_plugin.SSBPlugin"],
        "datasets": [{"path": str(curated), "type": "ssb_plugin.dataset"}],
        "dataset_prepared_path": f"{tmp_path / 'ssb'}/prepared",
        "output_dir": f"{tmp_path / 'ssb'}/out",
        "sample_packing": True,
        "val_set_size": 0.5,
        "eval_strategy": "steps",
        "eval_steps": 2,
    }
    out = _axolotl(ssb, tmp_path / "ssb", launcher=True)
    logs = training_log(ssb)
    train = [x for x in logs if "ssb_kd" in x and "loss" in x]
    evals = [x for x in logs if "eval_loss" in x]
    assert [x["step"] for x in train] == [1, 2], out[-4000:]
    for x in train:  # ce_weight 0: the loss is exactly the KD term
        assert x["loss"] == pytest.approx(x["ssb_kd"], rel=1e-3)
        assert x["ssb_ce"] > 0 and x["ssb_answer_tokens"] > 0
        check_diagnostics(x, 2.0)
    # eval_loss is HF's mean of per-batch losses, eval_ssb_kd is per answer token over all batches
    assert evals and evals[-1]["eval_loss"] == pytest.approx(evals[-1]["eval_ssb_kd"], rel=0.05)
    check_diagnostics(evals[-1], 2.0, prefix="eval_")
    _check_adapter(tiny_model_dir, Path(ssb["output_dir"]))


def test_cpu_recipe_on_smollm2(smollm2_dir, repo_root, tmp_path, tmp_path_factory):
    curated = cached_curated_set(
        smollm2_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=16, max_new_tokens=12
    )
    cfg = yaml.safe_load((repo_root / "recipes" / "ssb_smollm2_cpu.yml").read_text())
    assert cfg["plugins"] == ["ssb_plugin.SSBPlugin"] and cfg["datasets"][0]["type"] == "ssb_plugin.dataset"
    cfg.update(
        base_model=str(smollm2_dir),
        datasets=[{**cfg["datasets"][0], "path": str(curated)}],
        dataset_prepared_path=str(tmp_path / "prepared"),
        output_dir=str(tmp_path / "out"),
        max_steps=2,
    )
    out = _axolotl(cfg, tmp_path, launcher=False)
    train = [x for x in training_log(cfg) if "ssb_kd" in x]
    assert len(train) == 2 and all(0 < x["loss"] < 100 for x in train), out[-4000:]
    _check_adapter(smollm2_dir, tmp_path / "out")
    shutil.rmtree(tmp_path / "prepared", ignore_errors=True)
