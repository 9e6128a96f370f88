"""The loss inside the output projection's forward (ssb_plugin.train.sharded), under sharding engines.

- one code path: on a plain model, the loss computed inside the head equals the loss computed from the
  hidden states and the head weight after the forward (the pre-sharding formulation);
- FSDP2 and FSDP1 on 2 CPU ranks over gloo (benchmarks/sharded_equality.py): loss and LoRA gradients
  equal one process's to 1e-5, for stored and online targets, tied and untied heads, in
  configurations where the head's parameters are released after its forward;
- strategies not verified are refused at config validation (ssb_plugin.train.scaleout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_plugin import _base_cfg, _validate, plugin_manager  # noqa: F401 (fixture)

from ssb_plugin.train.forward import answer_hidden, ssb_forward
from ssb_plugin.train.loss import sparse_kl_sums
from ssb_plugin.train.options import LossOptions
from ssb_plugin.train.scaleout import ZERO_STAGES_CHECKED, strategy_problems, zero_stage
from ssb_plugin.train.sharded import forward_with_head_loss, head_module, lm_head_params, resolve_lm_head

REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "benchmarks" / "sharded_equality.py"
LOSS = LossOptions(temperature=2.0, kd_weight=1.0, ce_weight=0.5, chunk_size=5)


def _bench():
    sys.path.insert(0, str(CHECK.parent))
    import sharded_equality

    return sharded_equality


@pytest.mark.parametrize("tied", [True, False])
def test_loss_in_head_equals_loss_after_forward(tied):
    bench = _bench()
    model = bench.build_model(tied)
    batch = bench.build_batch()
    loss, kd, ce, n, _ = ssb_forward(model, dict(batch), LOSS)
    assert n > 0 and torch.isfinite(loss) and loss.item() > 0

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    h, mask, _ = answer_hidden(model, inputs, batch["labels"])
    w, b = lm_head_params(resolve_lm_head(model))
    rows = [batch[k][:, :-1][mask] for k in ("ssb_target_ids", "ssb_target_weights", "ssb_target_logprobs")]
    ref, ref_kd, ref_ce = sparse_kl_sums(
        h, w, *rows, labels=batch["labels"][:, 1:][mask], bias=b, options=LOSS
    )
    torch.testing.assert_close((loss, kd, ce), (ref, ref_kd, ref_ce), rtol=1e-6, atol=1e-6)
    g = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    g_ref = torch.autograd.grad(ref, [p for p in model.parameters() if p.requires_grad])
    for a, r in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)


def test_head_forward_is_restored_even_when_the_loss_raises():
    model = _bench().build_model(True)
    head = head_module(model)
    x = torch.randn(1, 2, head.in_features)

    def boom(hidden, weight, bias):
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError, match="loss failed"):
        forward_with_head_loss(model, {"input_ids": torch.tensor([[1, 2, 3]])}, boom)
    assert "forward" not in head.__dict__
    assert head(x).shape == (1, 2, head.out_features)  # the real projection again


def test_a_model_that_rescales_its_logits_is_refused():
    """Logit soft-capping (Gemma 2) changes what the head's output means: refused, not silently wrong."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, final_logit_softcapping=30.0,
    )  # fmt: skip
    model = Gemma2ForCausalLM(cfg)

    def loss_fn(hidden, weight, bias):
        z = hidden @ weight.t()
        return z.sum() * 0 + 50.0, z.sum().detach() * 0, z.sum().detach() * 0

    with pytest.raises(RuntimeError, match="transforms its lm_head output"):
        forward_with_head_loss(model, {"input_ids": torch.tensor([[1, 2, 3]])}, loss_fn)


def _check(engines: list[str], port: int) -> list[dict]:
    """benchmarks/sharded_equality.py on 2 CPU ranks (gloo): its rows, after asserting a pass."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, str(CHECK), "check", "--engines", *engines, "--device", "cpu"]
    proc = subprocess.run([*cmd, "--port", str(port), "--timeout", "500"], env=env, capture_output=True, text=True,
                          timeout=560)  # fmt: skip
    verdict = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert verdict["verdict"] == "pass" and proc.returncode == 0, json.dumps(verdict, indent=1)[-4000:]
    rows = verdict["runs"]
    # each engine x (stored, online) x (tied, untied), each equal to one process
    assert len(rows) == 4 * len(engines), rows
    assert all(r["grad_scale"] > 1e-3 and r["loss_diff"] <= 1e-5 and r["grad_diff"] <= 1e-5 for r in rows), (
        rows
    )
    return rows


@pytest.mark.slow
def test_ddp_and_fsdp_two_cpu_ranks_equal_one_process():
    """DDP; FSDP2 (fully_shard) and FSDP1 with the head released after its forward in every configuration."""
    rows = _check(["ddp", "fsdp2", "fsdp1"], 29561)
    assert all(r["head_sharded"] == (r["engine"] != "ddp") for r in rows), rows


@pytest.mark.slow
def test_deepspeed_zero_two_cpu_ranks_equal_one_process():
    """DeepSpeed ZeRO-1/2/3 on its CPU accelerator: ZeRO-3 releases the head after its forward."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is part of the training venv (scripts/setup_env.sh)")
    rows = _check(["zero1", "zero2", "zero3"], 29563)
    assert all(r["head_sharded"] == (r["engine"] == "zero3") for r in rows), rows


def test_zero_stage_is_read_from_a_json_path_or_a_dict(tmp_path):
    path = tmp_path / "zero3.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}, "bf16": {"enabled": "auto"}}))
    assert zero_stage(str(path)) == 3
    assert zero_stage({"zero_optimization": {"stage": 2}}) == 2
    assert zero_stage(None) is None and zero_stage(str(tmp_path / "missing.json")) is None


@pytest.mark.usefixtures("plugin_manager")
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_unverified_zero_stages_are_refused_at_config_validation(tiny_model_dir, tmp_path, stage):
    path = tmp_path / f"zero{stage}.json"
    path.write_text(
        json.dumps({"zero_optimization": {"stage": stage}, "train_micro_batch_size_per_gpu": "auto"})
    )
    cfg = _base_cfg(tiny_model_dir, deepspeed=str(path))
    if stage in ZERO_STAGES_CHECKED:
        assert not strategy_problems(cfg)
        return
    with pytest.raises(
        ValueError, match=rf"DeepSpeed ZeRO-{stage} is not verified .* tested: DDP, FSDP1, FSDP2"
    ):
        _validate(cfg)


@pytest.mark.usefixtures("plugin_manager")
def test_sequence_and_tensor_splits_are_refused(tiny_model_dir):
    assert strategy_problems({"tensor_parallel_size": 2})[0].startswith("tensor_parallel_size: 2")
    assert strategy_problems({"context_parallel_size": 2})[0].startswith("context_parallel_size: 2")
    assert strategy_problems({"tensor_parallel_size": 1, "deepspeed": None}) == []
    with pytest.raises(ValueError, match="tensor parallelism"):
        _validate(_base_cfg(tiny_model_dir, tensor_parallel_size=2))
