"""docs/design.md's layout table (path -> job -> what it imports) is recomputed from the code here,
so the map a newcomer reads cannot drift from the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ssb_plugin

PACKAGE = Path(ssb_plugin.__file__).resolve().parent
DOC = PACKAGE.parent / "docs" / "design.md"


def module_name(path: Path) -> str:
    """ssb_plugin/train/loss.py -> ssb_plugin.train.loss; a package's __init__.py -> the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _target(base: str, name: str) -> str:
    """`from base import name`: the submodule base.name when there is one, else base itself."""
    return f"{base}.{name}" if f"{base}.{name}" in MODULES else base


def imported_modules(module: str) -> set[str]:
    """Every ssb_plugin module `module` imports, at the top or lazily inside a function: `import a.b`,
    `from a import b` (the submodule a.b when b is one, else the package a), relative imports and
    importlib.import_module("ssb_plugin...")."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found |= {_target(base, a.name) for a in node.names}
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    unknown = {m for m in found if m.split(".")[0] == "ssb_plugin" and m not in MODULES}
    assert not unknown, f"{path}: imports {sorted(unknown)}, which are not modules of the package"
    return {m for m in found if m in MODULES} - {module}


def module_graph() -> dict[str, set[str]]:
    return {m: imported_modules(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """The import cycles: per strongly connected component of two or more modules (Tarjan's
    algorithm), one closed path through it (a shortest way back to its first module) and all its
    modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [(_closed_path(graph, c), sorted(c)) for c in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    paths = {w: [start, w] for w in sorted(graph[start] & component)}
    frontier = list(paths)
    while start not in paths:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return paths[start]


def _entry(module: str) -> str:
    """The table's name for a module: `train/` for anything in a subpackage, `record.py` for a root
    module, `__init__.py` for the package itself."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__.py"
    return f"{parts[0]}/" if (PACKAGE / parts[0]).is_dir() else f"{parts[0]}.py"


def imports_by_entry() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, imported in module_graph().items():
        here = _entry(module)
        graph.setdefault(here, set()).update({_entry(m) for m in imported} - {here})
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
    # atomic.py (the one file writer) is a leaf: the contract may use it, it uses nothing
    for leaf in ("atomic.py", "fields.py"):
        assert code[leaf] == set(), leaf
    for contract in ("record.py", "prompts.py", "jsonl.py"):
        assert code[contract] <= {"atomic.py"}, contract


def test_no_import_cycles():
    found = cycles(module_graph())
    assert not found, "import cycles in ssb_plugin/:\n" + "\n".join(
        f"{' -> '.join(path)}   (modules in the cycle: {', '.join(members)})" for path, members in found
    )


def test_the_graph_reads_relative_lazy_and_submodule_imports():
    graph = {
        "ssb_plugin.grading.cli": imported_modules("ssb_plugin.grading.cli"),  # from . import api, pool
        "ssb_plugin.grading": imported_modules("ssb_plugin.grading"),  # the package's __init__.py
        "ssb_plugin": imported_modules("ssb_plugin"),  # lazily, inside __getattr__
    }
    assert {"ssb_plugin.grading.api", "ssb_plugin.grading.pool"} <= graph["ssb_plugin.grading.cli"]
    assert "ssb_plugin.grading.api" in graph["ssb_plugin.grading"]
    assert graph["ssb_plugin"] == {"ssb_plugin.train.plugin"}
    # `from ssb_plugin.curate import ownership` is the submodule; `from ssb_plugin.curate.config import X` the module
    merge = imported_modules("ssb_plugin.curate.merge")
    assert {"ssb_plugin.curate.ownership", "ssb_plugin.curate.config"} <= merge
    assert "ssb_plugin.curate" not in merge


def test_cycles_are_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [(["a", "b", "c", "a"], ["a", "b", "c"])]
    knot = {"x": {"y", "z"}, "y": {"x"}, "z": {"x"}, "w": {"x"}}
    assert cycles(knot) == [(["x", "y", "x"], ["x", "y", "z"])]
    assert cycles({"p": {"q"}, "q": set()}) == []
