"""Self-check of a curated set before training on it (design: docs/training.md, "The objective").

    python -m ssb_plugin.selfcheck runs/ssb-easy --model <the curating model> [--limit 8]

For each row (ssb_plugin.train.identity): the model on the *teacher's* prompt + response_ids must
reproduce the stored raw log-probs at the contract's positions (P-1+j), and the trained target at the
training temperature, for the set's target kind, must be at KL ~0 from it (the identity); one
position late it must not be. Prints one JSON line per row, then one summary line with the identity
KL, the teacher's tail share at T (probability outside the stored top-k) and the student-side KD
(what training starts from). Exit 1 past the tolerances.
"""

from __future__ import annotations

import argparse
import json
import sys

from ssb_plugin.train.options import DEFAULT_LOSS
from ssb_plugin.train.targets import RENORMALISED, TargetError, TargetInfo, tail_share


def summary(stats: list[dict], info: TargetInfo, rows, temperature: float, tolerances) -> dict:
    """The one-line verdict: identity KL and alignment against their tolerances, shifted must be larger."""
    n = sum(s["answer_tokens"] for s in stats)
    identity = sum(s["identity_kl"] * s["answer_tokens"] for s in stats) / n
    aligned = max(s["aligned_mean_abs"] for s in stats)
    shifted = min((s["shifted_kl"] for s in stats if "shifted_kl" in s), default=float("inf"))
    share = tail_share(rows, info, temperature)
    ok = identity <= tolerances["identity"] and aligned <= tolerances["aligned"] and shifted > identity
    return {
        "ok": bool(ok),
        "target": info.kind,
        "temperature": temperature,
        "identity_kl_per_token": identity,
        "identity_tolerance": tolerances["identity"],
        "aligned_mean_abs_worst_row": aligned,
        "shifted_kl_min_row": shifted,
        "tail_share": share,
        "student_kd_per_token": sum(s["student_kd_per_token"] * s["answer_tokens"] for s in stats) / n,
        "rows": len(stats),
        "answer_tokens": n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssb_plugin.selfcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="curated set directory (or hub id)")
    ap.add_argument("--model", required=True, help="the model that curated the set (path or hub id)")
    ap.add_argument("--limit", type=int, default=8, help="rows to check")
    ap.add_argument("--tolerance", type=float, default=0.05, help="max mean |Δ log p| at aligned positions")
    ap.add_argument(
        "--identity-tolerance", type=float, default=1e-3, help="max identity KL per answer token (nats) at T"
    )
    ap.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_LOSS.temperature,
        help="the training temperature (ssb_temperature)",
    )
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssb_plugin.record import Manifest, RecordError, check_tokenizer
    from ssb_plugin.train.identity import check_row

    tok = AutoTokenizer.from_pretrained(args.model)
    try:
        manifest = Manifest.load(args.data)
        check_tokenizer(tok, manifest)
        info = TargetInfo.from_manifest(manifest)
        if info.kind != RENORMALISED:
            info.index(args.temperature, source=args.data)
    except (RecordError, TargetError) as e:
        print(f"selfcheck: error: {e}", file=sys.stderr)
        return 2
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()
    rows = load_dataset(args.data, split="train")
    rows = [rows[i] for i in range(min(args.limit, len(rows)))]
    stats = [check_row(model, tok, row, info, args.temperature) for row in rows]
    for s in stats:
        print(json.dumps(s), file=sys.stderr)
    tolerances = {"identity": args.identity_tolerance, "aligned": args.tolerance}
    result = summary(stats, info, rows, args.temperature, tolerances)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
