"""The output directory: parquet shards, per-chunk progress, manifest, dataset card.

Layout:
    <out>/data/shard-XXXXX.parquet   kept records of chunk XXXXX (chunks with no kept record: no file)
    <out>/manifest.json              record.Manifest, rewritten after every chunk
    <out>/README.md                  dataset card (`load_dataset(<out>)` reads data/*.parquet)
    <out>/.ssb-progress/run.json     the settings the directory was started with (resume must match)
    <out>/.ssb-progress/chunk-XXXXX.json   a finished chunk: outcome counts, each problem's outcome, timings
    <out>/.ssb-progress/pending-XXXXX.json a generated chunk waiting for its target pass (vLLM
                                           backend: the engine is shut down before the scorer loads)

Crash safety: each file is written by `ssb_plugin.atomic` (hidden temp name, fsync, rename); a
chunk's progress file is renamed only after its shard is, so a chunk is either done (both present)
or redone on resume. Hidden names are ignored by `datasets`. Which directories may be written and
what `--overwrite` may delete: `curate.ownership`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ssb_plugin.atomic import TEMP_GLOB, atomic_path, atomic_write_text
from ssb_plugin.curate import ownership
from ssb_plugin.curate.config import ConfigError, with_defaults
from ssb_plugin.curate.ownership import CARD_FILE, DATA_DIR, PROGRESS_DIR, RUN_MARKER
from ssb_plugin.record import NESTED_COLUMNS, NESTED_FIELDS, features

_NESTED_DTYPE = {c.name: np.dtype(c.dtype) for c in NESTED_COLUMNS}


def shard_path(root: Path, chunk: int) -> Path:
    return root / DATA_DIR / f"shard-{chunk:05d}.parquet"


def _nested_array(arrays: list[np.ndarray], dtype) -> Any:
    """list<list<dtype>> from per-row (R_i, k) arrays, built from offsets (no Python per value)."""
    import pyarrow as pa

    k = arrays[0].shape[1] if arrays else 0
    rows = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    flat = np.concatenate([a.reshape(-1) for a in arrays]).astype(dtype) if arrays else np.zeros(0, dtype)
    inner = pa.ListArray.from_arrays(
        pa.array((np.arange(rows.sum() + 1) * k).astype(np.int32)), pa.array(flat)
    )
    outer = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(rows)]).astype(np.int32)), inner)
    return outer


def records_table(rows: list[dict[str, Any]]):
    """A pyarrow Table with the record schema (features() metadata included, so `datasets` reads it)."""
    import pyarrow as pa

    schema = features().arrow_schema
    cols = []
    for f in schema:
        if f.name in _NESTED_DTYPE:
            col = _nested_array([r[f.name] for r in rows], _NESTED_DTYPE[f.name])
        else:
            col = pa.array([r[f.name] for r in rows], type=f.type)
        cols.append(col.cast(f.type) if col.type != f.type else col)
    return pa.Table.from_arrays(cols, schema=schema)


def write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically write rows as zstd parquet. Top-k columns use byte-stream-split without dictionaries:
    grouping the bytes of each int32/float32 is what makes them compress (float32 stays exact)."""
    import pyarrow.parquet as pq

    table = records_table(rows)
    leaf = [f"{c}.list.element.list.element" for c in NESTED_FIELDS]
    ids = ["response_ids.list.element"]
    dict_cols = [c for c in table.column_names if c not in NESTED_FIELDS and c != "response_ids"]

    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=9,
            use_dictionary=dict_cols,
            use_byte_stream_split=leaf + ids,
            row_group_size=64,
        )


def dataset_card(manifest: dict[str, Any]) -> str:
    """README.md: YAML header (tags), then a human summary.

    No `configs:` block: `load_dataset(<out>)` finds `data/*.parquet` by its default patterns, and
    with a `configs:` block datasets caches a local directory without looking at the files' mtimes,
    so a set re-curated into the same directory would load stale rows.
    """
    counts = manifest.get("counts", {})
    total = sum(counts.values()) or 1
    lines = [
        "---",
        "tags:",
        "- ssb",
        "- self-distillation",
        "- semantic-soft-bootstrapping",
        "---",
        "",
        "# SSB teacher/student set",
        "",
        "Curated by `ssb-curate` (ssb-plugin) for Semantic Soft Bootstrapping (arXiv 2512.05105): per kept "
        "problem, the student chat (system + bare question), the hinted teacher chat, the teacher's "
        "verified answer as exact token ids (end-of-turn token included) and, at each answer position, "
        "the teacher target of a teacher-forced scoring pass: its top token ids and raw log-probs, the exact "
        "log-normaliser at each listed temperature and sampled tail ids (see the manifest's `target`).",
        "",
        f"- model: `{manifest.get('model')}` (revision {manifest.get('revision')})",
        f"- backend: {manifest.get('backend')}",
        f"- source: `{manifest.get('source', {}).get('data')}`",
        f"- seed: {manifest.get('seed')}, stored top-k: {manifest.get('stored_topk')}",
        f"- target: `{json.dumps(manifest.get('target', {}), sort_keys=True)}`",
        f"- sampling: `{json.dumps(manifest.get('sampling', {}), sort_keys=True)}`",
        f"- complete: {manifest.get('extra', {}).get('complete')}",
        "",
        "| outcome | problems | share |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {k} | {v} | {100 * v / total:.1f}% |" for k, v in counts.items()]
    lines += [
        "",
        "Load with `datasets.load_dataset(<this directory or repo>)`; train with "
        "`datasets: [{path: <this>, type: ssb_plugin.dataset}]` and `plugins: [ssb_plugin.SSBPlugin]`. "
        "Full provenance (prompts, tokenizer and chat-template hashes, timings): `manifest.json`.",
        "",
    ]
    return "\n".join(lines)


def settings_diff(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> str:
    """'key: old -> new; ...' with the fingerprints (input, model) spelled out for a person."""
    parts = []
    for k in keys[:8]:
        a, b = old.get(k), new.get(k)
        if k in FINGERPRINT_NOTES:
            parts.append(f"{FINGERPRINT_NOTES[k]} ({k}: {str(a)[:12]}… -> {str(b)[:12]}…)")
        else:
            parts.append(f"{k}: {a!r} -> {b!r}")
    return "; ".join(parts)


# Settings derived from content rather than given as flags (see curate.fingerprint).
FINGERPRINT_NOTES = {
    "input_sha256": "the input data changed since this directory was started",
    "model_sha256": "the model files changed since this directory was started",
}


class OutputDir:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.progress_dir = self.root / PROGRESS_DIR

    def _chunk_file(self, chunk: int) -> Path:
        return self.progress_dir / f"chunk-{chunk:05d}.json"

    def prepare(self, settings: dict[str, Any], overwrite: bool = False) -> None:
        """Start or resume. Refused: a directory ssb-curate did not create (whatever the flags), or
        one started with other settings (unless `overwrite`, which deletes only ssb-curate's files)."""
        run_file = self.progress_dir / RUN_MARKER
        kind = ownership.kind(self.root)
        if kind == "foreign":
            ownership.refuse_foreign(self.root, "out")
        if overwrite and kind != "new":
            ownership.remove_owned(self.root)
        elif kind == "merge":
            raise ConfigError(
                f"out: {self.root} holds a merged set (ssb-curate merge), not a resumable run; use another "
                f"--out, or --overwrite to replace that set"
            )
        elif kind == "run":
            old, new = with_defaults(json.loads(run_file.read_text())), with_defaults(settings)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if diff:
                raise ConfigError(
                    f"out: {self.root} was started with different settings ({settings_diff(old, new, diff)}); "
                    f"resume needs the same settings and input. Use another --out, or --overwrite to start "
                    f"over (it deletes only the files ssb-curate wrote there)."
                )
        if not run_file.exists():
            ownership.claim(self.root, RUN_MARKER, settings)
        (self.root / DATA_DIR).mkdir(parents=True, exist_ok=True)
        for stale in [
            *self.root.glob(TEMP_GLOB),
            *self.root.glob(f"{DATA_DIR}/{TEMP_GLOB}"),
            *self.progress_dir.glob(TEMP_GLOB),
        ]:
            stale.unlink(missing_ok=True)  # left by a killed run; never renamed into place

    def done_chunks(self) -> dict[int, dict[str, Any]]:
        done = {}
        for f in sorted(self.progress_dir.glob("chunk-*.json")):
            done[int(f.stem.split("-")[1])] = json.loads(f.read_text())
        return done

    def _pending_file(self, chunk: int) -> Path:
        return self.progress_dir / f"pending-{chunk:05d}.json"

    def write_pending(self, chunk: int, generated_json: str) -> None:
        atomic_write_text(self._pending_file(chunk), generated_json)

    def pending_chunks(self) -> list[int]:
        """Chunks generated and not yet scored; one also finished (killed between its shard and the
        removal of its pending file) is not pending."""
        done = set(self.done_chunks())
        found = sorted(int(f.stem.split("-")[1]) for f in self.progress_dir.glob("pending-*.json"))
        return [c for c in found if c not in done]

    def read_pending(self, chunk: int) -> str:
        return self._pending_file(chunk).read_text()

    def drop_pending(self, chunk: int) -> None:
        self._pending_file(chunk).unlink(missing_ok=True)

    def write_chunk(self, chunk: int, rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
        path = shard_path(self.root, chunk)
        if rows:
            write_shard(path, rows)
        else:
            path.unlink(missing_ok=True)
        atomic_write_text(self._chunk_file(chunk), json.dumps({"chunk": chunk, "rows": len(rows), **info}))

    def write_manifest(self, manifest) -> None:
        manifest.save(self.root)
        atomic_write_text(self.root / CARD_FILE, dataset_card(json.loads(manifest.to_json())))

    def finished_manifest(self):
        """The manifest of a set already marked complete here, or None."""
        from ssb_plugin.record import MANIFEST_FILE, Manifest

        if not (self.root / MANIFEST_FILE).is_file():
            return None
        m = Manifest.load(self.root)
        return m if m.extra.get("complete") else None

    def shard_files(self) -> list[Path]:
        return sorted((self.root / DATA_DIR).glob("shard-*.parquet"))
