"""Which parallel strategies the SSB loss is proven on, read from the Axolotl config before the model loads.

The loss runs inside the output projection's forward (ssb_plugin.train.sharded), which is where DDP,
FSDP1/2 and DeepSpeed ZeRO gather its parameters; docs/scale-out.md lists what each strategy was
checked with (tests/test_sharded.py via benchmarks/sharded_equality.py). A strategy that was not
checked is refused here, at config validation, naming what is tested, instead of a crash mid-step
or a silently wrong loss.
Kept free of torch imports: it runs inside the config model's validator.
"""

from __future__ import annotations

import json
from pathlib import Path

# The strategies checked equal to one process (tests on 2 CPU ranks, gloo; docs/scale-out.md).
CHECKED = ("DDP", "FSDP1", "FSDP2", "DeepSpeed ZeRO-1/2/3")
# A ZeRO stage outside this set (a future stage) is refused until benchmarks/sharded_equality.py
# has passed for it.
ZERO_STAGES_CHECKED: frozenset[int] = frozenset({1, 2, 3})
# Splitting a sequence or a matmul across ranks changes which rows/columns a rank sees: the loss
# shifts hidden states by one position and multiplies by the whole head, so these are refused.
SPLITS = {
    "tensor_parallel_size": "tensor parallelism",
    "context_parallel_size": "context parallelism",
    "sequence_parallel_degree": "sequence parallelism",
}


def _tested() -> str:
    return f"tested: {', '.join(CHECKED)} (see docs/scale-out.md)"


def zero_stage(deepspeed) -> int | None:
    """The ZeRO stage of Axolotl's `deepspeed:` value (a JSON path or a dict); None when unset or unreadable
    (Axolotl reports an unreadable file itself)."""
    if not deepspeed:
        return None
    cfg = deepspeed
    if isinstance(deepspeed, str | Path):
        try:
            cfg = json.loads(Path(deepspeed).read_text())
        except (OSError, ValueError):
            return None
    stage = (cfg.get("zero_optimization") or {}).get("stage", 0) if isinstance(cfg, dict) else None
    return int(stage) if isinstance(stage, int | str) and str(stage).isdigit() else None


def strategy_problems(cfg) -> list[str]:
    """Problems with the config's parallel strategy for the SSB loss (empty: a checked strategy).
    `cfg`: anything with attribute or `.get` access to Axolotl's keys."""

    def get(key):
        return cfg.get(key) if hasattr(cfg, "get") else getattr(cfg, key, None)

    problems = []
    stage = zero_stage(get("deepspeed"))
    if stage is not None and stage > 0 and stage not in ZERO_STAGES_CHECKED:
        problems.append(
            f"DeepSpeed ZeRO-{stage} is not verified with the SSB loss (benchmarks/sharded_equality.py "
            f"check --engines zero{stage}); {_tested()}"
        )
    for key, what in SPLITS.items():
        size = get(key)
        if isinstance(size, int) and size > 1:
            problems.append(f"{key}: {size} ({what}) is not supported by the SSB loss; {_tested()}")
    return problems
