"""The GRPO baseline of the paper's comparison (recipes/grpo_qwen3b.yml): data prep + grader reward.

    python -m ssb_plugin.grpo prepare --input gsm8k_train.jsonl --out runs/grpo-gsm8k.jsonl
    axolotl train recipes/grpo_qwen3b.yml

Rows are already in TRL's conversational GRPO format (`prompt` = the SSB student messages, so both
rows of the comparison see the same prompt; `gold` = the reference answer), so the recipe needs no
Axolotl `type:` transform. The reward is the project grader (ssb_plugin.grading): 1.0 when the
completion's final answer is equivalent to `gold`, else 0.0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssb_plugin.grading.gold import gsm8k_gold
from ssb_plugin.prompts import student_messages


def gold_of(row: dict) -> str:
    """GSM8K's answer field ends in '#### N'; other sets carry the bare answer."""
    answer = str(row.get("gold", row.get("answer", "")))
    return gsm8k_gold(answer) or answer.strip()


def prepare(rows, question_field: str = "question") -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        question = row.get(question_field) or row.get("problem")
        if not question:
            raise ValueError(f"row {i}: no {question_field!r} (or 'problem') field")
        gold = gold_of(row)
        if not gold:
            raise ValueError(f"row {i}: no gold answer ('answer' or 'gold')")
        out.append({"prompt": student_messages(question), "gold": gold})
    return out


def _text(completion) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def correctness_reward(prompts, completions, gold=None, **kwargs) -> list[float]:
    """TRL reward function: 1.0 if the completion's final answer equals `gold` (the grader), else 0.0."""
    from ssb_plugin.grading import grade

    if gold is None:
        raise ValueError(
            "correctness_reward needs a `gold` column in the dataset (python -m ssb_plugin.grpo prepare)"
        )
    return [1.0 if grade(_text(c), str(g)).correct else 0.0 for c, g in zip(completions, gold, strict=True)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssb_plugin.grpo", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="JSONL problems -> GRPO rows (prompt messages + gold)")
    p.add_argument("--input", required=True, help="JSONL with question/answer (GSM8K) or problem/answer")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    with open(args.input) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = prepare(rows[: args.limit] if args.limit else rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
