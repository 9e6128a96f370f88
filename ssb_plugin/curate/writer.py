"""The output directory: parquet shards, per-chunk progress, manifest, dataset card.

Layout:
    <out>/data/shard-XXXXX.parquet   kept records of chunk XXXXX (chunks with no kept record: no file)
    <out>/manifest.json              record.Manifest, rewritten after every chunk
    <out>/README.md                  dataset card (`load_dataset(<out>)` reads data/*.parquet)
    <out>/.ssb-progress/run.json     the settings the directory was started with (resume must match)
    <out>/.ssb-progress/chunk-XXXXX.json   a finished chunk: outcome counts, each problem's outcome, timings

Crash safety: each file is written to a hidden temp name in the same directory and renamed into
place; a chunk's progress file is renamed only after its shard is, so a chunk is either done
(both present) or redone on resume. Hidden names are ignored by `datasets`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ssb_plugin.curate.config import ConfigError
from ssb_plugin.record import MANIFEST_FILE, TARGET_FIELDS, features

PROGRESS_DIR = ".ssb-progress"
DATA_DIR = "data"
CARD_FILE = "README.md"
_NESTED = ("teacher_topk_ids", "teacher_topk_logprobs", *TARGET_FIELDS)  # [R][width] numeric columns


def shard_path(root: Path, chunk: int) -> Path:
    return root / DATA_DIR / f"shard-{chunk:05d}.parquet"


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


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
        if f.name in _NESTED:
            col = _nested_array(
                [r[f.name] for r in rows], np.int32 if f.name.endswith("_ids") else np.float32
            )
        else:
            col = pa.array([r[f.name] for r in rows], type=f.type)
        cols.append(col.cast(f.type) if col.type != f.type else col)
    return pa.Table.from_arrays(cols, schema=schema)


def write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically write rows as zstd parquet. Top-k columns use byte-stream-split without dictionaries:
    grouping the bytes of each int32/float32 is what makes them compress (float32 stays exact)."""
    import pyarrow.parquet as pq

    table = records_table(rows)
    leaf = [f"{c}.list.element.list.element" for c in _NESTED]
    ids = ["response_ids.list.element"]
    dict_cols = [c for c in table.column_names if c not in _NESTED and c != "response_ids"]

    def write(tmp):
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=9,
            use_dictionary=dict_cols,
            use_byte_stream_split=leaf + ids,
            row_group_size=64,
        )

    _atomic_write_bytes(path, write)


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


class OutputDir:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.progress_dir = self.root / PROGRESS_DIR

    def _chunk_file(self, chunk: int) -> Path:
        return self.progress_dir / f"chunk-{chunk:05d}.json"

    def prepare(self, settings: dict[str, Any], overwrite: bool = False) -> None:
        """Start or resume. A directory started with other settings is refused (or wiped with overwrite)."""
        run_file = self.progress_dir / "run.json"
        if overwrite:
            for name in (DATA_DIR, PROGRESS_DIR):
                shutil.rmtree(self.root / name, ignore_errors=True)
            for name in (MANIFEST_FILE, CARD_FILE):
                (self.root / name).unlink(missing_ok=True)
        if run_file.exists():
            old = json.loads(run_file.read_text())
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            if diff:
                detail = "; ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in diff[:8])
                raise ConfigError(
                    f"out: {self.root} was started with different settings ({detail}); resume needs the same "
                    f"settings. Use another --out, or --overwrite to start over."
                )
        elif (self.root / DATA_DIR).exists() or (self.root / MANIFEST_FILE).exists():
            raise ConfigError(
                f"out: {self.root} holds data not written by a resumable ssb-curate run; "
                f"use another --out or --overwrite"
            )
        self.progress_dir.mkdir(parents=True, exist_ok=True)
        (self.root / DATA_DIR).mkdir(parents=True, exist_ok=True)
        if not run_file.exists():
            atomic_write_text(run_file, json.dumps(settings, indent=2, sort_keys=True))
        for stale in list(self.root.glob(f"{DATA_DIR}/.*.tmp-*")) + list(self.progress_dir.glob(".*.tmp-*")):
            stale.unlink(missing_ok=True)  # left by a killed run; never renamed into place

    def done_chunks(self) -> dict[int, dict[str, Any]]:
        done = {}
        for f in sorted(self.progress_dir.glob("chunk-*.json")):
            done[int(f.stem.split("-")[1])] = json.loads(f.read_text())
        return done

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

    def shard_files(self) -> list[Path]:
        return sorted((self.root / DATA_DIR).glob("shard-*.parquet"))
