"""Print a wheel's unconditional requirements, one per line, minus the names given to skip.

    python scripts/wheel_requirements.py axolotl-0.21.0-py3-none-any.whl 'triton|xformers|...'

For installing a package whose declared Python range excludes ours: its dependencies go in by the
normal resolver, the wheel itself with --no-deps (setup_env.sh, the Axolotl 0.21 venv).
"""

from __future__ import annotations

import re
import sys
import zipfile


def requirements(wheel: str, skip: str) -> list[str]:
    skipped = re.compile(rf"^({skip})\b", re.I)
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    out = []
    for line in lines:
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            req = line.split(":", 1)[1].strip()
            if not skipped.match(req):
                out.append(req.split(";")[0].strip())
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2])))
