"""Alignment self-check of a curated set (docs/design.md, "The alignment contract"), before training on it.

    python -m ssb_plugin.selfcheck runs/ssb-easy --model <the curating model> [--limit 8]

For each row, the model is run on the *teacher's* prompt + response_ids (what the teacher saw) and
its log-probs at the stored top-k ids are compared with the stored ones: at the contract's positions
(P-1+j) they must agree up to the curation backend's numerics, and one position off they must not.
Also prints the student-side KL/token (what training starts from). Exit 1 if the check fails.
"""

from __future__ import annotations

import argparse
import json
import sys


def check_rows(model, tokenizer, rows, *, temperature: float = 2.0) -> list[dict]:
    """Per row: mean/max |stored - model| log-prob at the aligned positions and one position later."""
    import torch

    from ssb_plugin.record import response_input

    out = []
    for row in rows:
        resp = list(row["response_ids"])
        ids_t = torch.tensor(row["teacher_topk_ids"], dtype=torch.long)
        stored = torch.tensor(row["teacher_topk_logprobs"], dtype=torch.float32)
        r = len(resp)
        stats = {"id": row["id"], "answer_tokens": r}
        for side, key in (("teacher", "teacher_messages"), ("student", "student_messages")):
            ids, p = response_input(tokenizer, row[key], resp)
            with torch.no_grad():
                logits = model(torch.tensor([ids], device=model.device)).logits[0].float().cpu()
            lp = torch.log_softmax(logits, -1)
            at = lp[p - 1 : p - 1 + r].gather(-1, ids_t)  # the contract's positions
            if side == "teacher":
                stats["aligned_mean_abs"] = (at - stored).abs().mean().item()
                stats["aligned_max_abs"] = (at - stored).abs().max().item()
                if r > 1:  # row j scored one position later
                    off = lp[p : p + r - 1].gather(-1, ids_t[:-1])
                    stats["shifted_mean_abs"] = (off - stored[:-1]).abs().mean().item()
            else:  # top-k forward KL at T on the student's own prompt (the training objective at step 0)
                t_lp = torch.log_softmax(stored / temperature, -1)
                s_lp = torch.log_softmax(logits[p - 1 : p - 1 + r] / temperature, -1).gather(-1, ids_t)
                kl = (t_lp.exp() * (t_lp - s_lp)).sum(-1)
                stats["student_kd_per_token"] = (temperature**2 * kl).mean().item()
        out.append(stats)
    return out


def verdict(stats: list[dict], tolerance: float) -> tuple[bool, str]:
    aligned = max(s["aligned_mean_abs"] for s in stats)
    shifted = [s["shifted_mean_abs"] for s in stats if "shifted_mean_abs" in s]
    shifted_min = min(shifted) if shifted else float("inf")
    ok = aligned <= tolerance and aligned < shifted_min
    msg = (
        f"aligned |Δ log p| (worst row mean) {aligned:.3g} (tolerance {tolerance}); "
        f"shifted by one {shifted_min:.3g} (must be larger): {'OK' if ok else 'FAILED'}"
    )
    return ok, msg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssb_plugin.selfcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="curated set directory (or hub id)")
    ap.add_argument("--model", required=True, help="the model that curated the set (path or hub id)")
    ap.add_argument("--limit", type=int, default=8, help="rows to check")
    ap.add_argument("--tolerance", type=float, default=0.05, help="max mean |Δ log p| at aligned positions")
    ap.add_argument("--temperature", type=float, default=2.0, help="for the student-side KD number")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssb_plugin.record import Manifest, check_tokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    check_tokenizer(tok, Manifest.load(args.data))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()
    rows = load_dataset(args.data, split="train")
    rows = [rows[i] for i in range(min(args.limit, len(rows)))]
    stats = check_rows(model, tok, rows, temperature=args.temperature)
    for s in stats:
        print(json.dumps(s))
    ok, msg = verdict(stats, args.tolerance)
    kd = sum(s["student_kd_per_token"] for s in stats) / len(stats)
    print(f"{msg}; student-side KD (T^2 * KL per token, T={args.temperature}) {kd:.4g}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
