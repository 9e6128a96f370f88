"""The SSB loss under sharding engines equals one process: loss and LoRA gradients, one JSON verdict.

    python benchmarks/sharded_equality.py check --engines ddp fsdp2 fsdp1 zero1 zero2 zero3 --device cpu   # gloo
    python benchmarks/sharded_equality.py check --device cuda     # 2 GPUs, NCCL, every engine

`check` runs the reference (one process, the whole batch) and each engine under
`torchrun --nproc_per_node 2` (each rank half of the batch, the loss divided by the global answer-token
count, as SSBTrainer does), for tied and untied output embeddings, and prints one JSON object:
{"verdict": "pass" | "fail", "runs": [{engine, tied, loss_diff, grad_diff, grad_scale, head_sharded}]}.
`head_sharded` says the head's parameters were NOT whole after the forward returned (the hazard the
loss must avoid): the configurations are chosen so that it is true.

Model: a tiny random Qwen2 (built here, no download) with LoRA on all linear layers; batch: random
tokens with a prompt/answer split and a random stored target in the collator's format
(ssb_target_*), so the check needs only torch, transformers, peft (and deepspeed for zero3).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the loss options of this check (ssb_plugin.train.options.LossOptions): small chunks, CE on
LOSS = {"temperature": 2.0, "kd_weight": 1.0, "ce_weight": 0.5, "chunk_size": 5}
BATCH, SEQ, WIDTH = 4, 20, 6
TOL = 1e-5
MODES = ("stored", "online")
SHARDS_PARAMS = {"fsdp1", "fsdp2", "zero3"}  # engines that release the head's parameters after its forward


def build_model(tied: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=tied, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
    )
    gen = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at 0, which would make A's gradient 0
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def build_batch():
    """Right-padded rows of different lengths; labels and ssb_target_* as SSBDataCollator lays them out."""
    import torch

    from ssb_plugin.train.batch_keys import IDS, LOGPROBS, PAD_ID, WEIGHTS

    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 256, (BATCH, SEQ), generator=gen)
    attn = torch.ones(BATCH, SEQ, dtype=torch.long)
    labels = torch.full((BATCH, SEQ), -100)
    t_ids = torch.full((BATCH, SEQ, WIDTH), PAD_ID)
    t_w, t_lp = torch.zeros(BATCH, SEQ, WIDTH), torch.zeros(BATCH, SEQ, WIDTH)
    for b in range(BATCH):
        length, prompt = SEQ - 3 * b, 4 + b
        attn[b, length:] = 0
        labels[b, prompt:length] = ids[b, prompt:length]
        for t in range(prompt - 1, length - 1):  # row t: the target predicting labels[t + 1]
            cand = torch.randperm(256, generator=gen)[:WIDTH]
            t_ids[b, t] = cand
            t_w[b, t] = torch.softmax(torch.randn(WIDTH, generator=gen), -1)
            t_lp[b, t] = torch.log_softmax(torch.randn(WIDTH, generator=gen) * 2, -1) - 0.1
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "labels": labels,
        IDS: t_ids,
        WEIGHTS: t_w,
        LOGPROBS: t_lp,
    }


def wrap(model, engine: str, tied: bool, device):
    """The model under `engine`, configured so the head's parameters are released after its forward."""

    layers = model.base_model.model.model.layers
    head = model.base_model.model.lm_head
    if engine == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in layers:
            fully_shard(layer)
        if not tied:  # its own unit: resharded after its forward
            fully_shard(head, reshard_after_forward=True)
        fully_shard(model, reshard_after_forward=True)  # the root too (FSDP2 keeps it by default)
        return model, None
    if engine == "fsdp1":
        import functools

        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

        units = {id(m) for m in layers} | ({id(head)} if not tied else set())
        policy = functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda m: id(m) in units)
        return FSDP(model, auto_wrap_policy=policy, use_orig_params=True, device_id=device), None
    if engine in ("zero1", "zero2", "zero3"):
        import importlib

        import deepspeed

        if (
            device.type == "cpu"
        ):  # skip the JIT-compiled shared-memory all-reduce (minutes of C++ build): gloo
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None

        cfg = {
            "train_micro_batch_size_per_gpu": BATCH // int(os.environ.get("WORLD_SIZE", "1")),
            "zero_optimization": {"stage": int(engine[-1]), "stage3_param_persistence_threshold": 0},
            "optimizer": {"type": "SGD", "params": {"lr": 0.0}},
            "zero_allow_untested_optimizer": True,
        }
        engine_, *_ = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=cfg
        )
        return engine_, engine_
    if engine == "ddp":  # the reference engine: nothing sharded
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            model.to(device), device_ids=None if device.type == "cpu" else [device]
        ), None
    if engine == "none":
        return model.to(device), None
    raise ValueError(f"unknown engine {engine!r}")


def online_forward(model, batch: dict):
    """The online-teacher form of the loss: the teacher is the same model with the adapter disabled on a
    hinted prompt (here: the prompt tokens replaced, answer rows aligned), its final hidden states taken
    without gradient; the exact full-vocabulary KL runs inside the student's head (sharded.py)."""
    import torch

    from ssb_plugin.train.batch_keys import TARGET_KEYS
    from ssb_plugin.train.loss import full_vocab_kl_sums
    from ssb_plugin.train.options import LossOptions
    from ssb_plugin.train.sharded import forward_with_head_loss

    labels = batch.pop("labels")
    for key in TARGET_KEYS:
        batch.pop(key)
    mask = labels[:, 1:] != -100
    hinted = torch.where(labels == -100, (batch["input_ids"] * 7 + 3) % 256, batch["input_ids"])
    peft_model = getattr(model, "module", model)
    with torch.no_grad(), peft_model.disable_adapter():
        out = model(input_ids=hinted, attention_mask=batch["attention_mask"], output_hidden_states=True,
                    logits_to_keep=1, use_cache=False, return_dict=True)  # fmt: skip
    teacher = out.hidden_states[-1][:, :-1][mask]
    opts = LossOptions(**LOSS)

    def loss_fn(hidden, weight, bias):
        h = hidden[:, :-1][mask]
        return full_vocab_kl_sums(h, weight, teacher, labels=labels[:, 1:][mask], bias=bias, options=opts)

    (loss_sum, _, _), _ = forward_with_head_loss(model, batch, loss_fn)
    return loss_sum, int(mask.sum())


def head_is_sharded(model, full_numel: int) -> bool:
    """True when the head's weight, read now, is not the whole matrix (a shard, a DTensor, a placeholder)."""
    from ssb_plugin.train.sharded import head_module

    w = head_module(model).weight
    local = w.to_local() if hasattr(w, "to_local") else w
    return type(w).__name__ == "DTensor" or local.numel() != full_numel


def full_lora_grads(model, engine: str) -> dict:
    """{parameter name: its whole gradient} for the LoRA parameters, gathered from every rank."""
    if engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(model, with_grads=True):
            return {
                _clean(k): p.grad.detach().clone() for k, p in model.named_parameters() if p.requires_grad
            }
    if engine.startswith("zero"):
        from deepspeed.utils import safe_get_full_grad

        return {_clean(k): safe_get_full_grad(p).detach().clone() for k, p in model.module.named_parameters()
                if p.requires_grad}  # fmt: skip
    out = {}
    for k, p in model.named_parameters():
        if p.requires_grad:
            g = p.grad
            out[_clean(k)] = (g.full_tensor() if hasattr(g, "full_tensor") else g).detach().clone()
    return out


def _clean(name: str) -> str:
    return name.replace("_fsdp_wrapped_module.", "").replace(
        "module.", "", 1 if name.startswith("module.") else 0
    )


def step(engine: str, mode: str, tied: bool, device, world: int, rank: int) -> dict:
    """One step's loss (over the whole batch) and whole LoRA gradients under `engine`; `mode`: the
    stored target (ssb_forward) or the online teacher (online_forward)."""
    import torch
    import torch.distributed as dist

    from ssb_plugin.train.forward import ssb_forward
    from ssb_plugin.train.options import LossOptions

    model = build_model(tied)
    full_numel = model.base_model.model.lm_head.weight.numel()
    wrapped, ds_engine = wrap(model, engine, tied, device)
    part = BATCH // world
    mine = {k: v[rank * part : (rank + 1) * part].to(device) for k, v in build_batch().items()}
    if mode == "stored":
        loss_sum, _, _, n, _ = ssb_forward(wrapped, mine, LossOptions(**LOSS))
    else:
        loss_sum, n = online_forward(wrapped, mine)
    sharded = head_is_sharded(wrapped, full_numel)
    totals = torch.tensor([loss_sum.item(), float(n)], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(totals)
    # divided by the global answer-token count; x world because the engines average gradients over ranks
    loss = loss_sum / totals[1].item() * world
    if ds_engine is not None:
        ds_engine.backward(loss)
    else:
        loss.backward()
    grads = {k: v.cpu() for k, v in full_lora_grads(wrapped, engine).items()}
    return {"loss": (totals[0] / totals[1]).item(), "head_sharded": sharded, "grads": grads}


def run(engines: list[str], device_kind: str, out: Path) -> None:
    """Under torchrun: the reference (rank 0 alone, whole batch) and each engine, tied and untied;
    rank 0 writes the comparison rows to `out` (JSON)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = torch.device("cpu")
    if device_kind == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    rows = []
    for mode, tied in itertools.product(MODES, (True, False)):
        ref = step("none", mode, tied, device, 1, 0) if rank == 0 else None
        for engine in engines:
            got = step(engine, mode, tied, device, world, rank)
            if rank == 0:
                rows.append(
                    {"engine": engine, "mode": mode, "tied": tied, "world": world, **compare(ref, got)}
                )
    if rank == 0:
        out.write_text(json.dumps(rows))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def compare(ref: dict, got: dict) -> dict:
    missing = sorted(set(ref["grads"]) ^ set(got["grads"]))
    if missing:
        return {"error": f"gradient names differ: {missing[:4]}"}
    scale = max(v.abs().max().item() for v in ref["grads"].values())
    diff = max((ref["grads"][k] - got["grads"][k]).abs().max().item() for k in ref["grads"])
    return {
        "loss": got["loss"], "loss_diff": abs(ref["loss"] - got["loss"]), "grad_diff": diff,
        "grad_scale": scale, "head_sharded": got["head_sharded"],
    }  # fmt: skip


def check(engines: list[str], device: str, port: int, timeout: int) -> dict:
    """One `torchrun --nproc_per_node 2` launch; the verdict over its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        me = str(Path(__file__).resolve())
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               me, "run", "--engines", *engines, "--device", device, "--out", str(out)]  # fmt: skip
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        if device == "cpu":
            env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU accelerator (gloo), not an autodetected one
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"verdict": "fail", "error": f"timed out after {timeout} s", "engines": engines}
        if proc.returncode != 0 or not out.exists():
            return {"verdict": "fail", "error": (proc.stdout + proc.stderr)[-4000:], "engines": engines}
        rows = json.loads(out.read_text())
    for row in rows:
        good = "error" not in row and row["loss_diff"] <= TOL * max(1.0, abs(row["loss"]))
        good = good and row["grad_diff"] <= TOL * max(1.0, row["grad_scale"])
        # the configuration must show the hazard it guards against (parameters released after forward)
        row["pass"] = bool(good and row["head_sharded"] == (row["engine"] in SHARDS_PARAMS))
    ok = len(rows) == 2 * len(MODES) * len(engines) and all(r["pass"] for r in rows)
    return {"verdict": "pass" if ok else "fail", "device": device, "tolerance": TOL, "runs": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="reference + each engine on 2 ranks; print a JSON verdict")
    c.add_argument("--engines", nargs="+", default=["ddp", "fsdp2", "fsdp1", "zero1", "zero2", "zero3"])
    c.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    c.add_argument("--port", type=int, default=29531)
    c.add_argument("--timeout", type=int, default=600, help="seconds for the launch")
    r = sub.add_parser("run", help="the ranks' work (under torchrun)")
    r.add_argument("--engines", nargs="+", required=True)
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.engines, args.device, args.out)
        return 0
    verdict = check(args.engines, args.device, args.port, args.timeout)
    print(json.dumps(verdict, indent=1))
    return 0 if verdict["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
