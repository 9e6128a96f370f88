"""The public math sets ssb-plugin ships, and where tasks and curation read data from.

The files next to this module (README.md there: source, licence, rows, sha256 of each) travel in
the wheel, so the lm-eval tasks, `ssb-curate`'s GSM8K default, the tests and the benchmarks run
offline with no setting at all. One setting, `SSB_DATA_DIR`, chooses the source:

    unset      the packaged copies (this directory)
    hub        the dataset hub, by each set's usual id (same field names and rows)
    DIR        a directory holding files of the same names (e.g. newer copies)

This module must stay import-light (no `datasets`): the task locator and the grader's callers use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "SSB_DATA_DIR"
HUB = "hub"  # the SSB_DATA_DIR value that selects the hub
PACKAGED_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class HubSet:
    """A packaged file and the hub dataset it copies (None for the project's own sets)."""

    file: str
    hub_path: str | None = None
    hub_name: str | None = None
    hub_split: str | None = None


# The sets the package carries, by file name: the one place a set's hub id is written (task YAMLs
# name only the file).
SETS = {
    s.file: s
    for s in (
        HubSet("gsm8k_train.jsonl", "openai/gsm8k", "main", "train"),
        HubSet("gsm8k_test.jsonl", "openai/gsm8k", "main", "test"),
        HubSet("math500.jsonl", "HuggingFaceH4/MATH-500", None, "test"),
        HubSet("aime24.jsonl", "Maxwell-Jia/AIME_2024", None, "train"),
        HubSet("aime25.jsonl", "math-ai/aime25", None, "test"),
        HubSet("easy_heldout.jsonl"),  # the demo's held-out problems (ssb_plugin.demo.easy)
        HubSet("add20_heldout.jsonl"),  # the effect benchmark's held-out problems (the same module)
    )
}


def data_dir() -> Path | None:
    """Where local files are read from: the packaged copies, $SSB_DATA_DIR, or None for the hub."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    if not value:
        return PACKAGED_DIR
    if value == HUB:
        return None
    return Path(value).expanduser().resolve()


def packaged(file: str) -> Path:
    """A packaged file by name; a clear error for a name the package does not carry."""
    if file not in SETS:
        raise FileNotFoundError(f"ssb-plugin ships no {file!r}; it carries {sorted(SETS)}")
    return PACKAGED_DIR / file


def local_path(file: str) -> Path | None:
    """The file to read for a set, or None when the hub is selected (and the set has a hub copy).

    The project's own sets (no hub id) always come from the package. A directory given in
    SSB_DATA_DIR must hold the file: a missing one is an error naming it, never a silent switch.
    """
    where = data_dir()
    hub = SETS.get(file)
    if hub is not None and hub.hub_path is None:
        return packaged(file)
    if where is None:
        return None
    path = where / file
    if not path.is_file():
        raise FileNotFoundError(
            f"{DATA_DIR_ENV}={os.environ.get(DATA_DIR_ENV)} is set but {path} does not exist"
        )
    return path


def hub_set(file: str) -> HubSet:
    """The hub copy of a set, for reading it with SSB_DATA_DIR=hub; a clear error where none is known."""
    hub = SETS.get(file)
    if hub is None or hub.hub_path is None:
        raise FileNotFoundError(
            f"{DATA_DIR_ENV}={HUB}: no hub copy is known for {file!r} (ssb_plugin.data.SETS names "
            f"{sorted(f for f, s in SETS.items() if s.hub_path)})"
        )
    return hub


def file_for_hub(hub_path: str, hub_name: str | None, split: str) -> str | None:
    """The packaged file that copies a hub (path, config, split), or None."""
    for s in SETS.values():
        if (s.hub_path, s.hub_name, s.hub_split) == (hub_path, hub_name, split):
            return s.file
    return None
