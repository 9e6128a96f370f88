"""What the tests that run `ssb-curate` as a subprocess share: its environment and the easy
problems they curate."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
CURATE_ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def easy_rows(path: Path, rows) -> Path:
    """These rows of easy_problems(40, seed=0) as a .jsonl (their ids, hence their seeds, kept)."""
    from ssb_plugin.demo.easy import easy_problems

    problems = easy_problems(40, seed=0)
    path.write_text("".join(json.dumps(problems[i]) + "\n" for i in rows))
    return path
