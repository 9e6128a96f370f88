"""Content fingerprints of a run's input and model: part of a run's identity, like its settings.

A path names a file, not its content: an input edited between a kill and the resume, or a model
directory replaced by another checkpoint, would otherwise mix records of two versions in one set
marked complete. Resume and merge compare these fingerprints with the settings.

- input: sha256 over the problems as loaded (ids, questions, golds, bad rows), so it covers local
  files and hub datasets alike and only what the run uses (`--limit`).
- model: sha256 over the bytes of every file of a local model directory (weights, config,
  tokenizer); for a hub id, the commit its files resolve to (a commit names its content).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ssb_plugin.curate.problems import BadRow, Problem

_CHUNK = 1 << 24


def input_sha256(items: list[Problem | BadRow]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([type(it).__name__, *vars(it).values()], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def _dir_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(_CHUNK):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def _hub_commit(model: str, revision: str | None) -> str:
    from huggingface_hub import hf_hub_download

    config = Path(hf_hub_download(model, "config.json", revision=revision))
    return f"commit:{config.parent.name}"  # .../snapshots/<commit sha>/config.json


def model_sha256(model: str, revision: str | None = None) -> str:
    local = Path(model).expanduser()
    if local.is_dir():
        return _dir_sha256(local)
    return _hub_commit(model, revision)


def fingerprints(items: list[Problem | BadRow], model: str, revision: str | None) -> dict[str, str]:
    return {"input_sha256": input_sha256(items), "model_sha256": model_sha256(model, revision)}
