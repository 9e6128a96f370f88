"""The student's KL to the teacher on held-out hinted problems, per record, for several models.

    python -m ssb_plugin.demo.heldout_kl --data RUN/heldout_curated --model base=DIR --model ssb=DIR \\
        --temperature 2.0 --out RUN/heldout_kl.json

The held-out set is curated by the same model as the training set (teacher = the base model shown
one correct and one wrong attempt of its own), on problems training never saw. Each model is run
on the bare question followed by the teacher's response ids, and its top-k forward KL to the
teacher at temperature T is averaged over the response tokens of each record
(`ssb_plugin.train.selfcheck.check_rows`, the training objective at step 0). Needs torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssb_plugin.atomic import atomic_write_text


def heldout_kl(data: str | Path, models: dict[str, str], temperature: float) -> dict:
    """{"temperature", "ids", "kl": {model name: [KL per token, one per record]}}."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssb_plugin.record import Manifest, check_tokenizer
    from ssb_plugin.train.identity import check_row
    from ssb_plugin.train.targets import TargetInfo

    manifest = Manifest.load(data)
    info = TargetInfo.from_manifest(manifest)  # the target training uses, at the training temperature
    rows = list(load_dataset(str(data), split="train")) if manifest.counts.get("kept") else []
    out: dict = {"temperature": temperature, "ids": [r["id"] for r in rows], "kl": {}}
    for name, path in models.items():
        tok = AutoTokenizer.from_pretrained(path)
        check_tokenizer(tok, manifest)  # a different tokenizer would re-read the stored ids
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        stats = [check_row(model, tok, row, info, temperature) for row in rows]
        # check_row reports T^2 * KL (the loss's scale); the report states the KL itself
        out["kl"][name] = [s["student_kd_per_token"] / temperature**2 for s in stats]
        del model
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m ssb_plugin.demo.heldout_kl", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--data", required=True, help="the held-out set curated by ssb-curate")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--temperature", type=float, required=True, help="the training temperature")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    models = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"--model expects NAME=DIR, got {spec!r}")
        models[name] = path
    result = heldout_kl(args.data, models, args.temperature)
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(args.out)


if __name__ == "__main__":
    main()
