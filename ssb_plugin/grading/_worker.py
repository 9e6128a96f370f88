"""The grading worker: a long-lived subprocess that runs the sympy comparison.

Protocol: one JSON object per line on stdin (``{"pred": ..., "gold": ...}``), one JSON object per
line on stdout (``{"eq": bool}`` or ``{"error": "..."}``). It prints ``ready`` once its imports are
done. The parent kills it when a request overruns its deadline, which is what makes the time bound
hold in any thread or process (no signals involved). It exits when stdin closes.
"""

from __future__ import annotations

import json
import os
import select
import sys

# A runaway expression must not take the machine's memory with it.
_MEMORY_LIMIT = int(os.environ.get("SSB_GRADE_WORKER_MEMORY", str(4 << 30)))


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass


def main() -> None:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.setrecursionlimit(20_000)
    _limit_memory()
    from ssb_plugin.grading import realsets
    from ssb_plugin.grading.compare import compare_answers
    from ssb_plugin.grading.symbolic import WARMUP, symbolic_leaf_equal, warm_one

    compare_answers("\\frac{1}{2}+x", "x+0.5", symbolic_leaf_equal)
    out.write("ready\n")
    # While idle, parse a few typical expressions: ANTLR builds its prediction cache lazily, so the
    # first parses of each construct are several times slower. One at a time, only while no request
    # is waiting (the parent sends one request per worker and waits for its reply).
    pending = [realsets.warm] + [lambda t=t: warm_one(t) for t in WARMUP]
    while True:
        if pending and not select.select([sys.stdin], [], [], 0)[0]:
            pending.pop()()
            continue
        line = sys.stdin.readline()
        if not line:
            break
        try:
            req = json.loads(line)
            resp: dict[str, object] = {
                "eq": bool(compare_answers(req["pred"], req["gold"], symbolic_leaf_equal))
            }
        except Exception as exc:  # a worker answers every request (MemoryError, RecursionError too)
            resp = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        out.write(json.dumps(resp) + "\n")


if __name__ == "__main__":
    main()
