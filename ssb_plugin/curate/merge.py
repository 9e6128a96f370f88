"""Merge the output directories of `--shard i/N` runs into one set.

Shard files are named by global chunk index, so the runs' files never collide; the merged
manifest sums the per-outcome counts and timings. All runs must share the result settings
(model, data, sampling, seed, k, chunk size...); only `shard` may differ.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from ssb_plugin.curate.config import ConfigError
from ssb_plugin.curate.writer import CARD_FILE, DATA_DIR, OutputDir, dataset_card
from ssb_plugin.record import MANIFEST_FILE, Manifest


def merge(sources: list[str], out: str, overwrite: bool = False) -> Manifest:
    if not sources:
        raise ConfigError("merge: no source directories given")
    manifests = []
    for s in sources:
        m = Manifest.load(s)
        if not m.extra.get("complete"):
            raise ConfigError(
                f"merge: {s} is not complete (chunks {m.extra.get('chunks_done')}); finish or resume it first"
            )
        manifests.append(m)
    ref = manifests[0].extra.get("settings")
    for s, m in zip(sources[1:], manifests[1:], strict=True):
        if m.extra.get("settings") != ref or m.tokenizer != manifests[0].tokenizer:
            diff = sorted(k for k in ref if m.extra.get("settings", {}).get(k) != ref.get(k))
            raise ConfigError(
                f"merge: {s} was curated with other settings than {sources[0]} ({diff or 'tokenizer'})"
            )
    shards = [m.source.get("shard") for m in manifests]
    n = {str(x).split("/")[1] for x in shards}
    if len(n) != 1 or len(set(shards)) != len(shards):
        raise ConfigError(f"merge: expected distinct shards i/N of one N, got {shards}")
    dest = Path(out)
    if dest.exists() and any(dest.iterdir()):
        if not overwrite:
            raise ConfigError(f"merge: {dest} is not empty (use --overwrite)")
        shutil.rmtree(dest)
    (dest / DATA_DIR).mkdir(parents=True)
    for s in sources:
        for f in OutputDir(s).shard_files():
            target = dest / DATA_DIR / f.name
            if target.exists():
                raise ConfigError(
                    f"merge: {f.name} occurs in two sources; were the shards run with one chunk_size?"
                )
            shutil.copy2(f, target)
    counts: Counter = Counter()
    timings: Counter = Counter()
    stats: Counter = Counter()
    for m in manifests:
        counts.update(m.counts)
        timings.update(m.timings)
        stats.update(m.extra.get("stats", {}))
    merged = Manifest(**{**json.loads(manifests[0].to_json())})
    merged.counts = {k: counts.get(k, 0) for k in manifests[0].counts}
    merged.timings = {k: round(v, 3) for k, v in timings.items()}
    merged.source = {**merged.source, "shard": f"merged {len(sources)}/{n.pop()}"}
    merged.extra = {**merged.extra, "stats": dict(stats), "merged_from": [str(s) for s in sources]}
    merged.extra.pop("chunks_done", None)
    merged.save(dest)
    (dest / CARD_FILE).write_text(dataset_card(json.loads(merged.to_json())))
    assert (dest / MANIFEST_FILE).exists()
    return merged
