"""Print, one per line, the uv flags that reproduce pip's configured package sources.

uv does not read pip's configuration (pip.conf, PIP_* variables). A machine whose pip is pointed
at a mirror, a wheel folder or a constraints file (e.g. a CPU-only torch wheel, where PyPI's
default torch is the CUDA build) must get the same sources from uv, or uv resolves elsewhere.

    python -m pip config list | python scripts/pip_sources.py
"""

from __future__ import annotations

import shlex
import sys

# pip option -> uv flag (same meaning); each may hold several space-separated values
FLAGS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def uv_flags(config_list: str) -> list[str]:
    """`pip config list` lines (`scope.key='value'`) -> uv flags, each value once, in order."""
    seen: list[tuple[str, str]] = []
    for line in config_list.splitlines():
        key, sep, raw = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if not sep or option not in FLAGS:
            continue
        for value in shlex.split(raw)[0].split() if raw.strip() else []:
            if (FLAGS[option], value) not in seen:
                seen.append((FLAGS[option], value))
    flags = [x for pair in seen for x in pair]
    # pip takes the best version across all indexes; uv's default is the first index that has the name
    if any(f in ("--extra-index-url", "--index-url") for f, _ in seen):
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags


def main() -> None:
    print("\n".join(uv_flags(sys.stdin.read())))


if __name__ == "__main__":
    main()
