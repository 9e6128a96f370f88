"""docs/design.md's layout table (path -> job -> what it imports) is recomputed from the code here,
so the map a newcomer reads cannot drift from the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ssb_plugin

PACKAGE = Path(ssb_plugin.__file__).resolve().parent
DOC = PACKAGE.parent / "docs" / "design.md"


def _entry(module: str) -> str:
    """The table's name for a module: `train/` for anything in a subpackage, `record.py` for a root
    module, `__init__.py` for the package itself."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__.py"
    return f"{parts[0]}/" if (PACKAGE / parts[0]).is_dir() else f"{parts[0]}.py"


def imports_by_entry() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        here = f"{rel.parts[0]}/" if len(rel.parts) > 1 else rel.name
        found = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found |= {_entry(n) for n in names if n.split(".")[0] == "ssb_plugin"} - {here}
    return graph


def documented() -> dict[str, set[str]]:
    section = DOC.read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[2]))
    return table


def test_layout_table_matches_the_imports():
    doc, code = documented(), imports_by_entry()
    assert set(doc) == set(code), "entries missing from or extra in docs/design.md's layout table"
    for entry, imports in code.items():
        assert doc[entry] == imports, f"{entry}: design.md says {sorted(doc[entry])}, code {sorted(imports)}"


def test_the_shared_contract_imports_no_room():
    code = imports_by_entry()
    for contract in ("record.py", "prompts.py", "jsonl.py"):
        assert code[contract] == set(), contract
