"""`ssb-curate`: build the SSB teacher/student set (config file and/or flags; flags win).

ssb-curate --config curate.yaml --out runs/ssb-set
ssb-curate --model Qwen/Qwen2.5-3B-Instruct --limit 2000 --out runs/ssb-set --shard 0/4
ssb-curate merge --out runs/ssb-set runs/ssb-set-0 runs/ssb-set-1 ...
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, Field, fields
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

from ssb_plugin.curate.config import ConfigError, CurateConfig


def _flag_type(hint: Any) -> Any:
    """The argparse type of a field annotation: the non-None member of `X | None`; JSON for dicts;
    comma-separated values for lists."""
    if isinstance(hint, UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        return lambda text: [item(v) for v in text.split(",")]
    return json.loads if get_origin(hint) is dict else hint


def _flag_help(f: Field) -> str:
    help_ = f.metadata["help"]
    if f.metadata["choices"]:
        help_ += f" (one of: {', '.join(f.metadata['choices'])})"
    if isinstance(f.default, bool):
        help_ += f" (default: {'on' if f.default else 'off'})"
    elif f.default not in (None, "", MISSING) and len(str(f.default)) <= 40:
        help_ += f" (default: {f.default})"
    return help_


def build_parser() -> argparse.ArgumentParser:
    """One flag per CurateConfig field (the flag name is the key with dashes); bools get --no-X too."""
    p = argparse.ArgumentParser(
        prog="ssb-curate",
        description="Build the Semantic Soft Bootstrapping teacher/student set (see docs/curation.md). "
        "Subcommand `ssb-curate merge --out DIR SRC...` merges --shard runs.",
    )
    p.add_argument("--config", help="YAML or JSON file with any of the settings below (flags override it)")
    hints = get_type_hints(CurateConfig)
    for f in fields(CurateConfig):
        flag, typ = "--" + f.name.replace("_", "-"), _flag_type(hints[f.name])
        # default None: a flag that is not given leaves the config file's value (or the field's default)
        if typ is bool:
            p.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=_flag_help(f)
            )
        else:
            p.add_argument(flag, dest=f.name, type=typ, default=None, help=_flag_help(f))
    return p


def config_from_args(argv: list[str] | None) -> CurateConfig:
    args = vars(build_parser().parse_args(argv))
    file_values = CurateConfig.from_file(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    return CurateConfig.build(file_values, **args)


def summary_table(manifest) -> str:
    counts = manifest.counts
    total = sum(counts.values())
    width = max(len(k) for k in counts) + 2
    lines = [f"{'outcome':<{width}}{'problems':>9}{'share':>8}"]
    for k, v in counts.items():
        lines.append(f"{k:<{width}}{v:>9}{(100 * v / total if total else 0):>7.1f}%")
    lines.append(f"{'total':<{width}}{total:>9}")
    t = manifest.timings
    stats = manifest.extra.get("stats", {})
    lines.append(
        "time: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items())
        + f"; rollouts {stats.get('rollouts', 0)} ({stats.get('rollouts_correct', 0)} correct, "
        f"{stats.get('rollouts_no_answer', 0)} without answer), teacher answers "
        f"{stats.get('teacher_answers', 0)} ({stats.get('teacher_answers_too_long', 0)} too long), "
        f"kept answer tokens {stats.get('kept_tokens', 0)}"
    )
    return "\n".join(lines)


def _merge_main(argv: list[str]) -> int:
    from ssb_plugin.curate.merge import merge

    p = argparse.ArgumentParser(
        prog="ssb-curate merge", description="merge the output dirs of --shard i/N runs"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("sources", nargs="+")
    a = p.parse_args(argv)
    m = merge(a.sources, a.out, overwrite=a.overwrite)
    print(summary_table(m), file=sys.stderr)
    print(a.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["merge"]:
            return _merge_main(argv[1:])
        cfg = config_from_args(argv)
        from ssb_plugin.curate.pipeline import curate

        manifest = curate(cfg)
        print(summary_table(manifest), file=sys.stderr)
        if cfg.push_to_hub:
            from ssb_plugin.curate.hub import push

            url = push(cfg.out, cfg.push_to_hub, private=cfg.hub_private)
            print(f"pushed to {url}", file=sys.stderr)
        print(cfg.out)
        return 0
    except ConfigError as e:
        print(f"ssb-curate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
