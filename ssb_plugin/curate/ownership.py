"""Which output directories ssb-curate may write into, and which files in them it may delete.

A directory is ssb-curate's when it carries a marker in `.ssb-progress/`: `run.json` (a curation
run, written before anything else) or `merge.json` (a merged set). ssb-curate writes only into a
new or empty directory or one of its own; `--overwrite` deletes only the files it wrote there
(shards, manifest, card, progress files), never anything else. A directory without a marker is
refused whatever the flags: it may hold the user's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssb_plugin.atomic import TEMP_GLOB, atomic_write_text
from ssb_plugin.curate.config import ConfigError
from ssb_plugin.record import MANIFEST_FILE

PROGRESS_DIR = ".ssb-progress"
DATA_DIR = "data"
CARD_FILE = "README.md"
RUN_MARKER = "run.json"
MERGE_MARKER = "merge.json"
# What ssb-curate writes, relative to the output directory (and nothing else is ever deleted).
OWNED_GLOBS = (
    f"{DATA_DIR}/shard-*.parquet",
    f"{DATA_DIR}/{TEMP_GLOB}",
    MANIFEST_FILE,
    CARD_FILE,
    TEMP_GLOB,
    f"{PROGRESS_DIR}/*.json",
    f"{PROGRESS_DIR}/{TEMP_GLOB}",
)


def kind(root: Path) -> str:
    """'new' (missing or empty), 'run', 'merge', or 'foreign' (anything else: not ours to touch)."""
    if not root.exists():
        return "new"
    if not root.is_dir():
        return "foreign"
    progress = root / PROGRESS_DIR
    if (progress / RUN_MARKER).is_file():
        return "run"
    if (progress / MERGE_MARKER).is_file():
        return "merge"
    entries = list(root.iterdir())
    # a run killed while writing its marker leaves only an (almost) empty .ssb-progress/
    if all(e == progress and e.is_dir() and not list(e.glob("[!.]*")) for e in entries):
        return "new"
    return "foreign"


def refuse_foreign(root: Path, who: str) -> None:
    raise ConfigError(
        f"{who}: {root} is not empty and was not created by ssb-curate (no {PROGRESS_DIR}/{RUN_MARKER} or "
        f"{MERGE_MARKER}); ssb-curate writes only into a new or empty directory or one it created, and "
        f"never deletes files it did not write. Choose another output directory."
    )


def claim(root: Path, marker: str, content: dict[str, Any]) -> None:
    """Make `root` ssb-curate's: the marker is the first file written."""
    (root / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / PROGRESS_DIR / marker, json.dumps(content, indent=2, sort_keys=True))


def remove_owned(root: Path) -> list[Path]:
    """Delete the files ssb-curate wrote in its directory `root` (never anything else); return them."""
    if kind(root) not in ("run", "merge", "new"):
        refuse_foreign(root, "overwrite")
    markers = [root / PROGRESS_DIR / m for m in (RUN_MARKER, MERGE_MARKER)]
    files = [f for pattern in OWNED_GLOBS for f in root.glob(pattern) if f not in markers]
    removed = []
    for f in files + markers:  # the markers last: a directory half cleaned is still recognised
        if f.is_file() and not f.is_symlink():
            f.unlink()
            removed.append(f)
    for d in (root / DATA_DIR, root / PROGRESS_DIR):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed
