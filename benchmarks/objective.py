"""Each training objective against the paper's (dense full-vocabulary forward KL at T), in one run.

    .venv/bin/python benchmarks/objective.py --set DIR        # a set curated from the embedded model
    .venv/bin/python benchmarks/objective.py                  # curates a small one first (cached)

On the set's rows, with the embedded SmolLM2-135M-Instruct and a fresh LoRA (r16, all projections):
the teacher's full logits at every answer position (teacher prompt + response ids, teacher-forced)
give the reference and every stored variant (built by curation's own code, ssb_plugin.curate.targets,
at that variant's top-k / tail size). Per objective:
(a) identity: the objective's KL estimate per answer token at T with the student = the teacher;
(b) cosine and relative error of its LoRA gradient against the dense reference's, at initialisation
    (LoRA B given small random values, so every LoRA parameter has a gradient) and after a few
    AdamW steps on the reference objective;
(c) `--step` runs benchmarks/train_step.py (step time and peak memory vs the SFT step).
Goals: stored default >= 0.99 cosine at <= 1 KB per answer token; identity <= 1e-4 nats.
Online mode (`ssb_teacher: online`) is the dense objective computed as training computes it (batch
through the dataset type and collator, teacher pass with the adapter disabled); its step time and
memory against SFT: benchmarks/online_step.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ssb_plugin.curate.config import DEFAULT_STORED_TOPK, DEFAULT_TAIL_SAMPLES  # noqa: E402
from ssb_plugin.train.options import DEFAULT_LOSS, LossOptions  # noqa: E402

SAMPLED = ("systematic", "iid", "cv")  # variants with tail samples
CHUNK = 256  # answer positions per lm_head chunk here (a few rows: small chunks, small buffers)
# (name, stored top-k, tail samples, tail sampling); bytes = 8 per top-k or tail entry + 4 per T
VARIANTS = [
    ("renormalised top-64 (before)", 64, 0, "renorm"),
    ("top-64 + rest bucket", 64, 0, "bucket"),
    ("top-64 + 64 tail, iid", 64, 64, "iid"),
    ("top-64 + 64 tail, systematic", 64, 64, "systematic"),
    ("top-60 + 60 tail, systematic", 60, 60, "systematic"),
    (
        f"top-{DEFAULT_STORED_TOPK} + {DEFAULT_TAIL_SAMPLES} tail, systematic (default)",
        DEFAULT_STORED_TOPK,
        DEFAULT_TAIL_SAMPLES,
        "systematic",
    ),
    (
        f"top-{DEFAULT_STORED_TOPK} + {DEFAULT_TAIL_SAMPLES} tail, systematic, control variate",
        DEFAULT_STORED_TOPK,
        DEFAULT_TAIL_SAMPLES,
        "cv",
    ),
    ("top-16 + 108 tail, control variate", 16, 108, "cv"),
    ("top-64 + 60 tail, control variate", 64, 60, "cv"),
    ("top-96 + 28 tail, systematic", 96, 28, "systematic"),
    ("top-256 + 0 tail (exact top, no tail)", 256, 0, "topk-exact"),
]


def curate_small_set(out: Path) -> Path:
    """A few easy problems through the real pipeline (transformers backend), cached at `out`."""
    if (out / "manifest.json").exists():
        return out
    from ssb_plugin.curate.config import CurateConfig
    from ssb_plugin.curate.pipeline import curate
    from ssb_plugin.demo.easy import write_easy
    from ssb_plugin.embedded import converted_dir

    data = write_easy(out.parent / "objective-easy.jsonl", n=12, seed=0)
    cfg = CurateConfig.build(
        out=str(out), model=str(converted_dir()), data=str(data), backend="transformers", id_field="id",
        chunk_size=12, rollout_max_tokens=48, teacher_max_tokens=320, threads=1, answer_fallback=True,
        seed=1, progress=False,
    )  # fmt: skip
    curate(cfg)
    return out


def answer_states(model, tok, rows, view: str, grad: bool):
    """Final hidden states [N, H] at the positions predicting the response tokens, all rows."""
    import torch

    from ssb_plugin.record import chat_prompt_ids

    parts = []
    for row in rows:
        prompt = chat_prompt_ids(tok, row[f"{view}_messages"])
        ids = torch.tensor([prompt + list(row["response_ids"])])
        with torch.set_grad_enabled(grad):
            h = model(ids, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][0]
        parts.append(h[len(prompt) - 1 : len(prompt) - 1 + len(row["response_ids"])])
    return torch.cat(parts)


def variant_target(lp, name, k, m, how, temperature, seed=0):
    """(ids, weights, teacher log p_T) [N, W] for a variant, or ("bucket", ...) for the rest bucket."""
    import torch

    from ssb_plugin.curate.targets import TargetSpec, targets_from_logprobs
    from ssb_plugin.train.targets import TOPK_TAIL, TargetInfo, build_target

    spec = TargetSpec(stored_topk=k, tail_samples=m if how in SAMPLED else 0)
    gen = torch.Generator().manual_seed(seed)
    fields = targets_from_logprobs(lp, spec, gen)
    if how == "iid":  # m independent draws from the tail (for comparison with the systematic default)
        z = lp.double() / spec.tail_temperature
        z.scatter_(-1, torch.as_tensor(fields["teacher_topk_ids"]).long(), float("-inf"))
        tail = torch.multinomial(torch.softmax(z, -1), m, replacement=True, generator=gen)
        fields["teacher_tail_ids"] = tail.int().numpy()
        fields["teacher_tail_logprobs"] = lp.gather(-1, tail).numpy()
    kind = TOPK_TAIL if how != "renorm" else "renormalised-topk"
    info = TargetInfo(kind, tuple(spec.temperatures), spec.tail_temperature)
    target = [torch.as_tensor(a) for a in build_target(fields, info, temperature)]
    return target if how == "cv" else target[:3]  # cv: the tail-sample flags turn the control variate on


def objective_grad(name, how, target, h, weight, teacher_h, temperature):
    """(loss per token, d loss / d h) for one objective on the student's answer states h."""
    import torch

    from ssb_plugin.train.loss import full_vocab_kl_sums, sparse_kl_sums

    h = h.detach().requires_grad_()
    n = h.shape[0]
    if how == "dense":
        loss, _, _ = full_vocab_kl_sums(
            h, weight, teacher_h, options=LossOptions(temperature, chunk_size=CHUNK)
        )
    elif how == "bucket":  # exact top-k p_T plus one "rest" bucket matched to the student's rest mass
        ids, w, lp = target
        log_q = torch.log_softmax(h @ weight.t() / temperature, -1)
        q_top = log_q.gather(-1, ids).exp()
        rest_p = (1 - w.sum(-1)).clamp_min(1e-12)
        rest_q = (1 - q_top.sum(-1)).clamp_min(1e-12)
        kl = (w * (lp - log_q.gather(-1, ids))).sum(-1) + rest_p * (rest_p.log() - rest_q.log())
        loss = temperature**2 * kl.sum()
    else:
        ids, w, lp, *sampled = target
        loss, _, _ = sparse_kl_sums(
            h, weight, ids, w, lp, target_sampled=(sampled or [None])[0],
            options=LossOptions(temperature, chunk_size=CHUNK),
        )  # fmt: skip
    (g,) = torch.autograd.grad(loss / n, h)
    return loss.item() / n, g


def identity(how, target, teacher_logits, temperature) -> float:
    """KL estimate per token with the student = the teacher (its own logits at T). log q in float64,
    as the self-check takes it (ssb_plugin.train.identity): an fp32 logsumexp over the vocabulary is
    off by ~1e-6 nats, which would say nothing about the target."""
    import torch

    ids, w, lp = target[:3]
    log_q = torch.log_softmax(teacher_logits.double() / temperature, -1)
    kl = (w * (lp - log_q.gather(-1, ids.clamp_min(0)))).masked_fill(ids < 0, 0).sum(-1)
    if how == "bucket":
        rest_p = (1 - w.sum(-1)).clamp_min(1e-12)
        rest_q = (1 - log_q.gather(-1, ids).exp().sum(-1)).clamp_min(1e-12)
        kl = kl + rest_p * (rest_p.log() - rest_q.log())
    return kl.mean().item()


def lora_grads(h_graph, grad_h, params):
    import torch

    gs = torch.autograd.grad(h_graph, params, grad_outputs=grad_h, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, params, strict=True)]
    )


def compare(model, tok, rows, teacher_h, weight, temperature, params):
    """One table: per objective, identity KL, loss, cosine and relative error against the dense grad."""
    import torch

    h_graph = answer_states(model, tok, rows, "student", grad=True)
    with torch.no_grad():
        t_logits = teacher_h @ weight.t()
        lp = torch.log_softmax(t_logits, -1)
    _, g_ref_h = objective_grad("dense", "dense", None, h_graph, weight, teacher_h, temperature)
    g_ref = lora_grads(h_graph, g_ref_h, params)
    table = []
    for name, k, m, how in VARIANTS:
        target = variant_target(lp, name, k, m, how, temperature)
        loss, g_h = objective_grad(name, how, target, h_graph, weight, teacher_h, temperature)
        g = lora_grads(h_graph, g_h, params)
        table.append(
            {
                "objective": name,
                "bytes_per_token": 8 * (k + (m if how in SAMPLED else 0)) + 8,
                "identity_kl": identity(how, target, t_logits, temperature),
                "loss_per_token": loss,
                "cosine": torch.nn.functional.cosine_similarity(g.double(), g_ref.double(), dim=0).item(),
                "rel_error": ((g - g_ref).norm() / g_ref.norm()).item(),
            }
        )
    table.append(_online_row(model, tok, rows, temperature, g_ref, params))
    return table


def _online_row(model, tok, rows, temperature, g_ref, params) -> dict:
    """`ssb_teacher: online` as training runs it: the rows through tokenize_online + SSBDataCollator,
    online_forward (base-model teacher pass with the adapter disabled, chunked full-vocabulary KL)."""
    import torch

    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.dataset import tokenize_online
    from ssb_plugin.train.forward import online_forward

    def run(messages_key):
        batch = SSBDataCollator(tok)([tokenize_online(tok, r, messages_key) for r in rows])
        return online_forward(model, batch, LossOptions(temperature, chunk_size=CHUNK))

    loss, _, _, n, _ = run("student_messages")
    g = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss / n, params)])
    saved = {p: p.detach().clone() for name, p in model.named_parameters() if "lora_B" in name}
    with torch.no_grad():  # identity: zero LoRA (student = base model = teacher) on the teacher's prompt
        for p in saved:
            p.zero_()
        _, kd_id, _, n_id, _ = run("teacher_messages")
        for p, v in saved.items():
            p.copy_(v)
    return {
        "objective": "online (ssb_teacher: online)",
        "bytes_per_token": 0,
        "identity_kl": kd_id.item() / n_id,
        "loss_per_token": loss.item() / n,
        "cosine": torch.nn.functional.cosine_similarity(g.double(), g_ref.double(), dim=0).item(),
        "rel_error": ((g - g_ref).norm() / g_ref.norm()).item(),
    }


def tail_mass(teacher_h, weight, temperature) -> dict:
    """The teacher's probability at T outside its top-k (the default k), per answer token: mean, p50, max."""
    import torch

    with torch.no_grad():
        p = torch.softmax(teacher_h @ weight.t() / temperature, -1)
        rest = 1 - p.topk(DEFAULT_STORED_TOPK, dim=-1).values.sum(-1)
    return {
        "mean": round(rest.mean().item(), 3),
        "p50": round(rest.median().item(), 3),
        "max": round(rest.max().item(), 3),
    }


def train_steps(model, tok, rows, teacher_h, weight, temperature, steps: int) -> None:
    """A few AdamW steps on the dense reference objective (the student moves away from the base)."""
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    for _ in range(steps):
        h = answer_states(model, tok, rows, "student", grad=True)
        from ssb_plugin.train.loss import full_vocab_kl_sums

        loss, _, _ = full_vocab_kl_sums(
            h, weight, teacher_h, options=LossOptions(temperature, chunk_size=CHUNK)
        )
        opt.zero_grad()
        (loss / h.shape[0]).backward()
        opt.step()


def print_tables(report: dict, steps: int) -> None:
    for key in ("at_init", f"after_{steps}_steps"):
        print(f"\n{key}:")
        for r in report[key]:
            if "cosine" not in r:
                print(f"  {r['objective']}")
                continue
            print(
                f"  {r['objective']:<42} {r['bytes_per_token']:>6} B/tok  identity {r['identity_kl']:+.2e}  "
                f"loss {r['loss_per_token']:.4f}  cos {r['cosine']:+.4f}  rel.err {r['rel_error']:.4f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--set",
        type=Path,
        nargs="+",
        help="curated set(s), rows pooled (default: curate a small one into --cache)",
    )
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ssb-plugin" / "objective-set")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=DEFAULT_LOSS.temperature)
    ap.add_argument("--steps", type=int, default=10, help="AdamW steps before the second measurement")
    ap.add_argument("--step", action="store_true", help="also run benchmarks/train_step.py (time, memory)")
    args = ap.parse_args()

    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssb_plugin.embedded import converted_dir
    from ssb_plugin.train.sharded import lm_head_params, resolve_lm_head

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    paths = args.set or [curate_small_set(args.cache)]
    rows = [row for p in paths for row in load_dataset(str(p), split="train")][: args.rows]
    path = ", ".join(map(str, paths))
    tok = AutoTokenizer.from_pretrained(converted_dir())
    base = AutoModelForCausalLM.from_pretrained(converted_dir(), dtype=torch.float32).eval()
    weight = lm_head_params(resolve_lm_head(base))[0].detach()
    teacher_h = answer_states(base, tok, rows, "teacher", grad=False)
    torch.manual_seed(0)
    model = get_peft_model(
        base, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B = 0 would zero A's gradient: small random B so every LoRA weight counts
            torch.nn.init.normal_(p, std=1e-3)
    params = [p for p in model.parameters() if p.requires_grad]
    n = teacher_h.shape[0]
    print(f"set {path}: {len(rows)} rows, {n} answer tokens, T={args.temperature}", file=sys.stderr)
    report = {"rows": len(rows), "answer_tokens": n, "temperature": args.temperature}
    report["tail_mass"] = tail_mass(teacher_h, weight, args.temperature)
    print(f"teacher mass outside the top-{DEFAULT_STORED_TOPK} at T: {report['tail_mass']}", file=sys.stderr)
    t = time.perf_counter()
    report["at_init"] = compare(model, tok, rows, teacher_h, weight, args.temperature, params)
    train_steps(model, tok, rows, teacher_h, weight, args.temperature, args.steps)
    report[f"after_{args.steps}_steps"] = compare(
        model, tok, rows, teacher_h, weight, args.temperature, params
    )
    report["wall_s"] = round(time.perf_counter() - t, 1)
    if args.step:
        out = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "train_step.py")], capture_output=True, text=True
        )
        report["train_step"] = out.stdout.strip().splitlines()[-1:] or out.stderr[-500:]
    print_tables(report, args.steps)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
