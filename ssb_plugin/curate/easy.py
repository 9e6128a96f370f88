"""Easy problems for small models: "What is a + b?" with one-digit a, b (GSM8K-style `#### gold`).

SmolLM2-135M-Instruct gets about a third of these right at temperature 0.8, so most problems have
both a correct and a wrong rollout and the SSB selection keeps real records: the source for tests
and the CPU demo.  `python -m ssb_plugin.curate.easy out.jsonl [n] [seed]`
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path


def easy_problems(n: int = 40, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        # a stable id column (--id-field id): a subset of these rows keeps its ids, hence its seeds
        rows.append(
            {
                "id": f"easy-{seed}-{i}",
                "question": f"What is {a} + {b}?",
                "answer": f"{a} + {b} = {a + b}\n#### {a + b}",
            }
        )
    return rows


def write_easy(path: str | Path, n: int = 40, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in easy_problems(n, seed)))
    return path


if __name__ == "__main__":
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    s = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    print(write_easy(sys.argv[1], n, s))
