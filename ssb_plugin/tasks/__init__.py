"""The lm-eval task files (YAMLs + utils.py) live in this package directory, so an installed
`ssb-plugin` carries them; the repository's top-level `tasks` is a symlink here.

`ssb-tasks` (or `python -m ssb_plugin.tasks`) prints the directory to pass to `lm_eval --include_path`:

    lm_eval --include_path "$(ssb-tasks)" --tasks ssb_math500,aime24 ...

This module must not import lm-eval: it only locates and describes the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ssb_plugin.data import DATA_DIR_ENV, SETS, data_dir

TASKS_DIR = Path(__file__).resolve().parent


def include_path() -> str:
    """The directory to give `lm_eval --include_path` (absolute, so it works from any directory)."""
    return str(TASKS_DIR)


class _Loader(yaml.SafeLoader):
    """Reads the YAMLs without lm-eval: `!function x` stays the string `x`."""


def _function_tag(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_Loader.add_constructor("!function", _function_tag)


def _read(path: Path) -> dict:
    """One YAML with its `include:` files merged under it (the file's own keys win), as lm-eval does."""
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    included = cfg.pop("include", [])
    merged: dict = {}
    for name in [included] if isinstance(included, str) else included:
        merged.update(_read(path.parent / name))
    return {**merged, **cfg}


def task_configs() -> dict[str, dict]:
    """Every task / group YAML in the package (includes resolved), by task or group name."""
    out = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        cfg = _read(path)
        out[cfg.get("group") or cfg["task"]] = {**cfg, "_path": str(path)}
    return out


def _data_rows() -> list[tuple[str, str, str]]:
    """(task, hub source, local file) for every task that loads data with a hub copy."""
    rows = []
    for name, cfg in task_configs().items():
        file: str | None = (cfg.get("dataset_kwargs") or {}).get("local_file")
        hub = SETS.get(file) if file else None
        if file and hub is not None and hub.hub_path:  # sets without a hub copy always come from the package
            source = hub.hub_path + (f" ({hub.hub_name})" if hub.hub_name else "") + f" [{hub.hub_split}]"
            rows.append((name, source, file))
    return rows


def _file_problems(path: Path, limit: int = 5) -> list[str]:
    """Every line of a local JSONL file is read: 'FILE:LINE: why' for the first `limit` bad lines."""
    from ssb_plugin.jsonl import JsonlError, parse_line
    from ssb_plugin.tasks.doc_fields import doc_problem

    bad = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                row = parse_line(raw, str(path), lineno)
            except JsonlError as e:
                bad.append(str(e))
                continue
            problem = None if row is None else doc_problem(row)
            if problem:
                bad.append(f"{path} line {lineno}: {problem}")
    if len(bad) > limit:
        bad = [*bad[:limit], f"{path}: ... and {len(bad) - limit} more bad lines"]
    return bad


def check_data(data_dir: Path) -> list[str]:
    """Problems with a local data directory (missing files, lines that are not JSON objects or lack a
    question/answer), naming file and line; empty when usable."""
    problems = []
    for name, _, local in _data_rows():
        path = data_dir / local
        if not path.is_file():
            problems.append(f"{name}: missing {path}")
            continue
        problems += [f"{name}: {p}" for p in _file_problems(path)]
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="ssb-tasks",
        description="Print the lm-eval include path of the SSB tasks: "
        'lm_eval --include_path "$(ssb-tasks)" --tasks ssb_math500,aime24 ...',
    )
    p.add_argument("--list", action="store_true", help="list the tasks, their hub sets and local file names")
    p.add_argument(
        "--check-data",
        metavar="DIR",
        type=Path,
        help=f"check that DIR holds every task's local JSONL file (for offline runs with {DATA_DIR_ENV}=DIR)",
    )
    args = p.parse_args(argv)
    if args.check_data is not None:
        problems = check_data(args.check_data)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            return 1
        print(f"ok: run offline with {DATA_DIR_ENV}={args.check_data.resolve()}")
        return 0
    if args.list:
        where = data_dir()
        print(f"include path: {include_path()}")
        print(
            f"data: {where if where is not None else 'the hub'} (unset {DATA_DIR_ENV}: packaged, =hub, =DIR)"
        )
        for name, hub, local in _data_rows():
            print(f"{name:14s} {hub:40s} {local}")
        groups = [n for n, c in task_configs().items() if "group" in c]
        for g in groups:
            print(f"{g:14s} group: {', '.join(task_configs()[g]['task'])}")
        return 0
    print(include_path())
    return 0
