"""Merge the output directories of `--shard i/N` runs into one set.

Shard files are named by global chunk index, so the runs' files never collide; the merged
manifest sums the per-outcome counts and timings. All N runs must be present and complete, share
the result settings (model, data, sampling, seed, k, chunk size...), the input and model
fingerprints and the tokenizer; only `shard` differs. Every check runs before anything is written,
and the output may be neither a source nor overlap one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ssb_plugin.atomic import atomic_copy, atomic_write_text
from ssb_plugin.curate import ownership
from ssb_plugin.curate.config import ConfigError, with_defaults
from ssb_plugin.curate.ownership import CARD_FILE, DATA_DIR, MERGE_MARKER
from ssb_plugin.curate.tally import tally
from ssb_plugin.curate.writer import OutputDir, dataset_card
from ssb_plugin.record import Manifest, Outcome, RecordError
from ssb_plugin.shard_check import check_kept_rows


def _load_sources(sources: list[str]) -> list[Manifest]:
    manifests = []
    for s in sources:
        if not Path(s).is_dir():  # never read as a hub id: a merge is of local runs
            raise ConfigError(f"merge: source {s} is not a directory (does it exist?)")
        try:
            m = Manifest.load(s)
            if not m.extra.get("complete"):
                raise ConfigError(
                    f"merge: {s} is not complete (chunks {m.extra.get('chunks_done')}); finish or resume it first"
                )
            check_kept_rows(s, m.counts.get(Outcome.KEPT))
        except RecordError as e:
            raise ConfigError(f"merge: {e}") from None
        manifests.append(m)
    return manifests


def _identity(m: Manifest) -> dict:
    settings = with_defaults(m.extra.get("settings", {}))
    return {**settings, **m.extra.get("fingerprints", {}), "tokenizer": m.tokenizer}


def _check_compatible(sources: list[str], manifests: list[Manifest]) -> str:
    """Same settings everywhere and every part 0..N-1 exactly once; returns N."""
    ref = _identity(manifests[0])
    for s, m in zip(sources[1:], manifests[1:], strict=True):
        got = _identity(m)
        diff = sorted(k for k in set(ref) | set(got) if got.get(k) != ref.get(k))
        if diff:
            raise ConfigError(f"merge: {s} was curated with other settings than {sources[0]} ({diff})")
    shards = [str(m.source.get("shard")) for m in manifests]
    ns = {x.split("/")[-1] for x in shards}
    if len(ns) != 1 or len(set(shards)) != len(shards):
        raise ConfigError(f"merge: expected distinct shards i/N of one N, got {shards}")
    n = ns.pop()
    missing = [f"{i}/{n}" for i in range(int(n)) if f"{i}/{n}" not in shards]
    if missing:
        raise ConfigError(
            f"merge: parts {missing} are missing (given {shards}); a merged set must hold all {n} parts. "
            f"Run the missing --shard parts and merge all of them."
        )
    return n


def _check_destination(dest: Path, sources: list[str], overwrite: bool) -> None:
    d = dest.resolve()
    for s in sources:
        src = Path(s).resolve()
        if d == src or d.is_relative_to(src) or src.is_relative_to(d):
            raise ConfigError(
                f"merge: the output {dest} is or overlaps the source {s}; merge into a new directory"
            )
    kind = ownership.kind(dest)
    if kind == "foreign":
        ownership.refuse_foreign(dest, "merge")
    if kind != "new":
        if not overwrite:
            raise ConfigError(f"merge: {dest} holds an ssb-curate set; use --overwrite to replace it")
        ownership.remove_owned(dest)


def merge(sources: list[str], out: str, overwrite: bool = False) -> Manifest:
    if not sources:
        raise ConfigError("merge: no source directories given")
    manifests = _load_sources(sources)
    n = _check_compatible(sources, manifests)
    dest = Path(out)
    _check_destination(dest, sources, overwrite)
    ownership.claim(dest, MERGE_MARKER, {"merged_from": [str(s) for s in sources]})
    (dest / DATA_DIR).mkdir(parents=True, exist_ok=True)
    for s in sources:
        for f in OutputDir(s).shard_files():
            target = dest / DATA_DIR / f.name
            if target.exists():
                raise ConfigError(
                    f"merge: {f.name} occurs in two sources; were the shards run with one chunk_size?"
                )
            atomic_copy(f, target)
    counts, timings, stats = tally(
        {"counts": m.counts, "timings": m.timings, "stats": m.extra.get("stats", {})} for m in manifests
    )
    first = manifests[0]
    extra = {**first.extra, "stats": dict(stats), "merged_from": [str(s) for s in sources]}
    extra.pop("chunks_done", None)
    merged = replace(
        first,
        counts=counts,
        timings={k: round(v, 3) for k, v in timings.items()},
        source={**first.source, "shard": f"merged {len(sources)}/{n}"},
        extra=extra,
    )
    merged.save(dest)  # the manifest last: without it the directory is not a loadable set
    atomic_write_text(dest / CARD_FILE, dataset_card(json.loads(merged.to_json())))
    return merged
