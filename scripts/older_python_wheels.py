"""Print `name==version` for each installed distribution whose wheel was built for an older Python.

    .venv/bin/python scripts/older_python_wheels.py

Some pure-Python packages ship one wheel per Python version (multiprocess: py310, py311, ...),
each with code for that interpreter's private APIs. PEP 425 lets Python 3.11 install the py310
wheel, and uv does when an earlier index lists only that file for the version: pip compares the
files of every index, uv takes the version's files from the first index that has it. Multiprocess
then calls 3.11's `_posixsubprocess.fork_exec` with 3.10's arguments and every
`datasets.save_to_disk(num_proc>1)` fails. setup_env.sh reinstalls what this lists with pip.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

# a Python-version tag for a pure wheel: py310, py39 (not py3 / py2, which are version-agnostic)
VERSIONED = re.compile(r"^py(\d)(\d+)$")


def older_python_wheels(dists=None, current: tuple[int, int] = sys.version_info[:2]) -> list[str]:
    """Pure distributions whose WHEEL tags name only Python versions older than `current`."""
    out = []
    for dist in dists if dists is not None else metadata.distributions():
        wheel = dist.read_text("WHEEL") or ""
        tags = [t.split("-") for t in re.findall(r"^Tag:\s*(\S+)", wheel, re.M)]
        # pure wheels only: a binary's pyXY tag is a floor (abi-agnostic build), not a target
        versions = [VERSIONED.match(t[0]) if t[1:] == ["none", "any"] else None for t in tags]
        if versions and all(m and (int(m[1]), int(m[2])) < current for m in versions):
            out.append(f"{dist.metadata['Name']}=={dist.version}")
    return sorted(set(out))


if __name__ == "__main__":
    for requirement in older_python_wheels():
        print(requirement)
