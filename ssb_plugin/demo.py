"""Problems the embedded default model (SmolLM2-135M-Instruct) is *sometimes* right on.

SSB keeps only problems with at least one correct and one wrong rollout. GSM8K is beyond a 135M
model (0 of 40 mixed), while one-digit arithmetic gives a usable mix (notes/environment.md), so the
demo pipeline curates from these. Written in GSM8K's format (`question`, `answer` ending `#### N`)
so the same loader reads them.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

# (question, worked answer) templates; `op` is the Python operator the answer uses
_TEMPLATES = (
    ("What is {a} + {b}?", "+"),
    ("What is {a} plus {b}?", "+"),
    ("Tom has {a} apples and buys {b} more. How many apples does he have now?", "+"),
    ("What is {a} times {b}?", "*"),
)


def easy_problems(n: int = 48, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text, op = _TEMPLATES[i % len(_TEMPLATES)]
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        answer = a + b if op == "+" else a * b
        rows.append({"question": text.format(a=a, b=b), "answer": f"{a} {op} {b} = {answer}\n#### {answer}"})
    return rows


def write_easy_problems(path: str | Path, n: int = 48, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in easy_problems(n, seed)))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ssb_plugin.demo", description=__doc__.splitlines()[0])
    ap.add_argument("output", help="jsonl file to write")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(write_easy_problems(args.output, args.n, args.seed))


if __name__ == "__main__":
    main()
