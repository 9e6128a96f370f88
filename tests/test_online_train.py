"""`ssb_teacher: online` through the real CLIs: `ssb-curate --no-stored-target` writes a set without
log-probs, `axolotl train` trains on it with the online teacher, stored mode refuses it; the tiny
model trains online with sample packing, gradient checkpointing and an eval split; (2 torchrun CPU
ranks) the online loss under data parallelism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.axolotl_cli import ENV, check_diagnostics, training_log
from support.axolotl_cli import axolotl_ok as _axolotl
from support.axolotl_cli import check_adapter as _check_adapter
from support.axolotl_cpu import train_config
from support.curated_fixture import cached_curated_set, one_thread
from test_curate_hf import ARGS, ROWS

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def online_only_set(smollm2_dir, tmp_path_factory) -> Path:
    """A set curated by the real CLI with --no-stored-target (transformers backend, SmolLM2)."""
    from ssb_plugin.demo.easy import easy_problems

    root = tmp_path_factory.mktemp("online-set")
    rows = easy_problems(40, seed=0)
    data = root / "easy.jsonl"
    data.write_text("".join(json.dumps(rows[i]) + "\n" for i in ROWS))
    out = root / "set"
    cmd = [sys.executable, "-m", "ssb_plugin.curate.cli", "--model", str(smollm2_dir), "--data", str(data)]
    cmd += ["--out", str(out), *ARGS, "--no-stored-target"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_no_stored_target_set_has_no_log_probs_and_stored_mode_refuses(
    online_only_set, smollm2_dir, ssb_registered
):
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from ssb_plugin.record import Manifest, RecordError, validate_record
    from ssb_plugin.train.dataset import load

    m = Manifest.load(online_only_set)
    assert m.counts["kept"] >= 1 and m.stored_topk == 0 and m.target.kind == "none"
    assert m.target.stored is False and m.extra["settings"]["stored_target"] is False
    ds = load_dataset(str(online_only_set), split="train")
    for i, row in enumerate(ds):
        assert (
            row["teacher_topk_ids"] == [] and row["teacher_tail_ids"] == [] and row["teacher_log_norm"] == []
        )
        validate_record(row, f"row {i}", targets=False)
        with pytest.raises(RecordError, match="ssb_teacher: online"):
            validate_record(row, f"row {i}")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    cfg = {"plugins": ["ssb_plugin.SSBPlugin"]}
    with pytest.raises(RecordError, match=r"without teacher log-probs.*ssb_teacher: online"):
        load(tok, cfg, {"path": str(online_only_set)})
    assert load(tok, {**cfg, "ssb_teacher": "online"}, {"path": str(online_only_set)}).teacher == "online"


def test_axolotl_trains_online_on_a_set_without_log_probs(online_only_set, smollm2_dir, repo_root, tmp_path):
    import yaml

    cfg = yaml.safe_load((repo_root / "recipes" / "ssb_smollm2_cpu.yml").read_text())
    cfg.update(
        base_model=str(smollm2_dir),
        datasets=[{**cfg["datasets"][0], "path": str(online_only_set)}],
        dataset_prepared_path=str(tmp_path / "prepared"),
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        ssb_teacher="online",
    )
    out = _axolotl(cfg, tmp_path, launcher=False, timeout=1200)
    train = [x for x in training_log(cfg) if "ssb_kd" in x]
    assert len(train) == 2, out[-4000:]
    # the adapter starts at zero (student = base model on the bare question): KL > 0, finite
    assert all(0 < x["ssb_kd"] < 100 and x["ssb_answer_tokens"] > 0 for x in train), train
    _check_adapter(smollm2_dir, tmp_path / "out")


def test_axolotl_online_with_packing_checkpointing_and_eval(tiny_model_dir, tmp_path, tmp_path_factory):
    curated = cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=8, k=8)
    cfg = train_config(
        tiny_model_dir,
        curated,
        tmp_path,
        ssb_teacher="online",
        gradient_accumulation_steps=2,
        sample_packing=True,
        gradient_checkpointing=True,
        val_set_size=0.5,
        eval_strategy="steps",
        eval_steps=2,
    )
    out = _axolotl(cfg, tmp_path, launcher=True, timeout=1200)
    logs = training_log(cfg)
    train = [x for x in logs if "ssb_kd" in x and "loss" in x]
    evals = [x for x in logs if "eval_ssb_kd" in x]
    assert len(train) == 2, out[-4000:]
    for x in train:  # ce_weight 0: the loss is exactly the KD term
        assert x["loss"] == pytest.approx(x["ssb_kd"], rel=1e-3) and x["ssb_kd"] >= 0
        check_diagnostics(x, 2.0)
    assert evals and evals[-1]["eval_ssb_answer_tokens"] > 0
    check_diagnostics(evals[-1], 2.0, prefix="eval_")
    _check_adapter(tiny_model_dir, Path(cfg["output_dir"]))


@pytest.mark.parametrize("rollouts", ["teacher", "student"])
def test_two_process_torchrun_online(tiny_model_dir, tmp_path, tmp_path_factory, rollouts):
    """`axolotl train --launcher torchrun -- --nproc_per_node 2` on CPU (gloo DDP) with the online
    teacher, on the curated teacher text and on-policy (each rank samples its own rows' answers)."""
    curated = cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=8, k=8)
    on_policy = {"ssb_rollouts": "student", "ssb_rollout_max_tokens": 8} if rollouts == "student" else {}
    cfg = train_config(
        tiny_model_dir,
        curated,
        tmp_path,
        ssb_teacher="online",
        micro_batch_size=1,
        max_steps=None,
        num_epochs=1,
        **on_policy,
    )
    _axolotl(
        cfg,
        tmp_path,
        launcher=True,
        timeout=900,
        args=("--launcher", "torchrun", "--", "--nproc_per_node", "2"),
    )
    steps = [h for h in training_log(cfg) if "ssb_kd" in h]
    # one epoch of 8 records at micro-batch 1: 4 steps when two ranks share the data
    assert [h["step"] for h in steps] == [1, 2, 3, 4], steps
    assert all(h["ssb_kd"] >= 0 and h["ssb_answer_tokens"] > 0 for h in steps)
    if on_policy:
        assert all(1 <= h["ssb_rollout_tokens"] <= 8 for h in steps), steps
    assert (Path(cfg["output_dir"]) / "adapter_model.safetensors").exists()
