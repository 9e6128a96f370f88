"""The demo's problems: "What is a + b?" with one-digit a, b (GSM8K-style `#### gold`).

SmolLM2-135M-Instruct gets about a third of these right at temperature 0.8, so most problems have
both a correct and a wrong rollout and the SSB selection keeps real records: the source for tests
and the CPU demo.

The 81 (a, b) pairs are split once: the odd-numbered pairs form the held-out set the package ships
(`ssb_plugin/data/easy_heldout.jsonl`, the `ssb_easy_heldout` lm-eval task), the even-numbered ones
are what the demo curates and trains on, so the held-out score is on problems training never saw.

    python -m ssb_plugin.demo.easy out.jsonl [n] [seed]            # n problems, any pair
    python -m ssb_plugin.demo.easy out.jsonl [n] [seed] --train    # n problems from the training pairs
    python -m ssb_plugin.demo.easy --heldout out.jsonl             # the held-out set (as shipped)

The effect benchmark (benchmarks/effect.py) uses a wider family of the same kind, a and b from 1 to
20: its 400 pairs split once by a fixed shuffle (seed WIDE_SPLIT_SEED) into 200 training pairs and
200 held-out ones (`ssb_plugin/data/add20_heldout.jsonl`, the `ssb_add20_heldout` task).

    python -m ssb_plugin.demo.easy --wide-heldout out.jsonl        # the wider held-out set (as shipped)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ssb_plugin.atomic import atomic_write_text

DIGITS = range(1, 10)


def _row(ident: str, a: int, b: int) -> dict[str, str]:
    return {"id": ident, "question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}


def is_heldout(a: int, b: int) -> bool:
    """The fixed split: pair number 9(a-1) + (b-1) odd -> held out (40 of the 81 pairs)."""
    return (9 * (a - 1) + (b - 1)) % 2 == 1


def heldout_problems() -> list[dict[str, str]]:
    """Every held-out pair once, in order: the content of the shipped `easy_heldout.jsonl`."""
    return [_row(f"heldout-{a}-{b}", a, b) for a in DIGITS for b in DIGITS if is_heldout(a, b)]


def easy_problems(n: int = 40, seed: int = 0, *, train_only: bool = False) -> list[dict[str, str]]:
    """n random problems (pairs may repeat); `train_only` draws only pairs outside the held-out set.

    Without `train_only` the rows depend only on (n, seed), held-out pairs included: tests pick
    known-kept problems by id, so this draw stays fixed.
    """
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    while len(rows) < n:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        if train_only and is_heldout(a, b):
            continue
        # a stable id column (--id-field id): a subset of these rows keeps its ids, hence its seeds
        rows.append(_row(f"easy-{seed}-{len(rows)}", a, b))
    return rows


WIDE = range(1, 21)
WIDE_SPLIT_SEED = 20261204


def _wide_heldout_pairs() -> frozenset[tuple[int, int]]:
    pairs = [(a, b) for a in WIDE for b in WIDE]
    random.Random(WIDE_SPLIT_SEED).shuffle(pairs)
    return frozenset(pairs[: len(pairs) // 2])


def wide_heldout_problems() -> list[dict[str, str]]:
    """The wider family's 200 held-out pairs, in (a, b) order: the shipped `add20_heldout.jsonl`."""
    held = _wide_heldout_pairs()
    return [_row(f"add20-heldout-{a}-{b}", a, b) for a in WIDE for b in WIDE if (a, b) in held]


def wide_train_problems(n: int, seed: int = 0) -> list[dict[str, str]]:
    """n problems drawn from the wider family's 200 training pairs (pairs may repeat)."""
    held = _wide_heldout_pairs()
    train = [(a, b) for a in WIDE for b in WIDE if (a, b) not in held]
    rng = random.Random(seed)
    return [_row(f"add20-{seed}-{i}", *rng.choice(train)) for i in range(n)]


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_easy(path: str | Path, n: int = 40, seed: int = 0, *, train_only: bool = False) -> Path:
    return write_jsonl(path, easy_problems(n, seed, train_only=train_only))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ssb_plugin.demo.easy", description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("n", type=int, nargs="?", default=40)
    ap.add_argument("seed", type=int, nargs="?", default=0)
    ap.add_argument("--train", action="store_true", help="only pairs outside the held-out set")
    ap.add_argument("--heldout", action="store_true", help="write the held-out set instead")
    ap.add_argument("--wide-heldout", action="store_true", help="write the wider family's held-out set")
    args = ap.parse_args(argv)
    if args.heldout:
        print(write_jsonl(args.out, heldout_problems()))
    elif args.wide_heldout:
        print(write_jsonl(args.out, wide_heldout_problems()))
    else:
        print(write_easy(args.out, args.n, args.seed, train_only=args.train))


if __name__ == "__main__":
    main()
