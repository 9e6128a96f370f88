"""Axolotl's prepared-dataset cache, keyed by the curated sets it was built from.

Axolotl reuses `<dataset_prepared_path>/<hash>`, where the hash covers the dataset *config* (path,
type, split, ...), `sequence_len` and the tokenizer's name, never the data: on its own it would train
a curated set deleted, corrupted or re-curated at the same path from the stale prepared rows, and
skip the tokenizer check (which runs while the rows are built). So, before Axolotl's loader (the
plugin's `load_datasets` hook, in `axolotl train` and `axolotl preprocess`):

1. every `type: ssb_plugin.dataset` entry (train and test) is fingerprinted: sha256 over its manifest
   and every file `datasets` may read (non-hidden files, shards included) for a local set; the manifest
   and revision for a hub set. A set that no longer exists is an error;
2. the training tokenizer is checked against each manifest, cache or no cache;
3. `dataset_prepared_path` becomes `<dataset_prepared_path>/ssb-<key>`, the key covering the sets, the
   training tokenizer, the row-shaping `ssb_*` keys and the code that builds the rows. A changed set is
   a new directory: Axolotl rebuilds (and the rows are re-validated) instead of reusing.

A path prefix rather than a field fed into Axolotl's hash: the hash's inputs are internal lists that
change between Axolotl versions; the prepared path is read the same way by all of them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

from ssb_plugin.record import MANIFEST_FILE, Manifest, RecordError, tokenizer_fingerprint
from ssb_plugin.train.args import DATASET_TYPE
from ssb_plugin.train.config_value import cfg_value
from ssb_plugin.train.tokenizer_check import check_training_tokenizer

LOG = logging.getLogger("ssb_plugin.prepared_cache")

PREFIX = "ssb-"
# Config keys that change the prepared rows but are not in Axolotl's own hash: the target is built
# at the training temperature, and stored and online rows carry different columns.
ROW_KEYS = ("ssb_temperature", "ssb_teacher")
# Modules whose code builds the prepared rows: a changed row layout must not reuse old rows.
ROW_CODE = (
    "ssb_plugin.train.dataset",
    "ssb_plugin.train.targets",
    "ssb_plugin.train.batch_keys",
    "ssb_plugin.record",
)


def ssb_dataset_entries(cfg: Any) -> list[Any]:
    entries = list(cfg_value(cfg, "datasets") or []) + list(cfg_value(cfg, "test_datasets") or [])
    return [d for d in entries if cfg_value(d, "type") == DATASET_TYPE]


def _looks_local(path: str) -> bool:
    """A hub dataset id is `owner/name`; anything else is a filesystem path."""
    return Path(path).exists() or path.startswith(("/", ".", "~")) or path.count("/") != 1


def _readable_files(root: Path) -> list[Path]:
    """Files `datasets` may read from a local set: everything not under a hidden name."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)
    )


def _manifest_bytes(path: str, revision: str | None) -> bytes:
    local = Path(path).expanduser()
    if _looks_local(path):
        if not local.exists():
            raise RecordError(
                f"curated set {path}: not found (deleted or moved?). Refusing to train: a prepared cache of it "
                f"may remain under dataset_prepared_path, but its rows belong to a set that no longer exists."
            )
        file = local / MANIFEST_FILE if local.is_dir() else local
        if not file.exists():
            raise RecordError(f"{local}: no {MANIFEST_FILE}; is this a directory written by ssb-curate?")
        return file.read_bytes()
    from huggingface_hub import hf_hub_download

    try:
        downloaded = hf_hub_download(path, MANIFEST_FILE, repo_type="dataset", revision=revision)
    except Exception as e:  # offline without a cached copy, deleted repo, bad revision
        raise RecordError(
            f"curated set {path}: not found (no local directory {local.resolve()}, and no hub dataset "
            f"{path} with a {MANIFEST_FILE} at revision {revision}: {type(e).__name__})"
        ) from e
    return Path(downloaded).read_bytes()


def set_fingerprint(path: str, revision: str | None = None) -> tuple[str, Manifest]:
    """(sha256 of what identifies the set, its manifest); RecordError naming the path if it is gone."""
    raw = _manifest_bytes(path, revision)
    try:
        manifest = Manifest.from_dict(json.loads(raw), where=f"{path}/{MANIFEST_FILE}")
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}/{MANIFEST_FILE}: not valid JSON ({e})") from e
    h = hashlib.sha256(raw)
    h.update(f"\0revision={revision}".encode())
    local = Path(path).expanduser()
    if local.is_dir():
        for file in _readable_files(local):
            with file.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            h.update(f"\0{file.relative_to(local).as_posix()}={digest}".encode())
    return h.hexdigest(), manifest


def _code_digest() -> str:
    h = hashlib.sha256()
    for name in ROW_CODE:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RecordError(f"prepared cache: cannot find the source of {name}, which the cache key covers")
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


def check_and_key(cfg: Any, tokenizer) -> str | None:
    """Check every curated set of `cfg` and its tokenizer; point dataset_prepared_path at the cache
    directory of exactly these sets. Returns the key (None when the config has no curated set)."""
    entries = ssb_dataset_entries(cfg)
    if not entries:
        return None
    start = time.monotonic()
    parts = []
    for entry in entries:
        path, revision = str(cfg_value(entry, "path")), cfg_value(entry, "revision")
        fingerprint, manifest = set_fingerprint(path, revision)
        if cfg_value(cfg, "ssb_check_tokenizer") is not False:
            check_training_tokenizer(tokenizer, manifest, cfg=cfg, source=path)
        parts.append({"path": path, "revision": revision, "set": fingerprint})
    payload = {
        "sets": parts,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "rows": {k: cfg_value(cfg, k) for k in ROW_KEYS},
        "code": _code_digest(),
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    base = Path(str(cfg_value(cfg, "dataset_prepared_path") or _axolotl_default_prepared_path()))
    if base.name != PREFIX + key:  # already pointed here (e.g. the path `axolotl preprocess` printed)
        cfg["dataset_prepared_path"] = str(base / (PREFIX + key))
    LOG.info(
        "SSB: %d curated set(s) fingerprinted in %.1fs; prepared-dataset cache for exactly these sets: %s",
        len(parts),
        time.monotonic() - start,
        cfg["dataset_prepared_path"],
    )
    return key


def _axolotl_default_prepared_path() -> str:
    from axolotl.common.const import DEFAULT_DATASET_PREPARED_PATH

    return DEFAULT_DATASET_PREPARED_PATH
