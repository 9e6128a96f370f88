"""ssb_plugin.atomic: the one file writer (whole or not at all: no short files, fsync)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ssb_plugin.atomic import atomic_open, atomic_write_text, publish_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path, error):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(error), atomic_open(target) as f:
        f.write("new, half")
        raise error()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_the_file_and_its_directory_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_text(tmp_path / "m.json", "{}")
    assert (tmp_path / "m.json").read_text() == "{}"
    assert any(".m.json.tmp-" in s for s in synced) and str(tmp_path) in synced


def test_no_module_writes_files_another_way():
    """One writer: no other rename-into-place or direct whole-file write in the package."""
    pattern = re.compile(r"os\.replace\(|\.write_text\(|\.write_bytes\(|open\([^)]*[\"']w[b]?[\"']")
    offenders = []
    for path in (REPO / "ssb_plugin").rglob("*.py"):
        if path.name == "atomic.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    # an append-only log, a demo input, a whole converted model directory renamed into place
    allowed = {"ssb_plugin/train/training_log.py", "ssb_plugin/demo/easy.py", "ssb_plugin/embedded.py"}
    assert [o for o in offenders if o.split(":")[0] not in allowed] == []


def _built(root: Path, name: str, text: str) -> Path:
    tmp = root / f".{name}.build"
    tmp.mkdir()
    (tmp / "config.json").write_text(text)
    return tmp


def _has_config(d: Path) -> bool:
    return (d / "config.json").exists()


def test_publish_dir_keeps_the_first_complete_copy(tmp_path):
    out = tmp_path / "model"
    assert publish_dir(_built(tmp_path, "a", "first"), out, _has_config) == out
    held = (out / "config.json").open()  # a reader of the first copy
    publish_dir(_built(tmp_path, "b", "second"), out, _has_config)
    assert held.read() == "first" and (out / "config.json").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the loser's build is gone


def test_publish_dir_replaces_an_incomplete_copy(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "weights.bin").write_text("left by an older layout")
    publish_dir(_built(tmp_path, "a", "new"), out, _has_config)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def _race(root: str, i: int) -> str:
    out = Path(root) / "model"
    tmp = _built(Path(root), f"b{i}", f"builder {i}")
    publish_dir(tmp, out, _has_config)
    return (out / "config.json").read_text()


def test_publish_dir_concurrent_builders_agree_on_one_copy(tmp_path):
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        seen = pool.starmap(_race, [(str(tmp_path), i) for i in range(8)])
    final = (tmp_path / "model" / "config.json").read_text()
    assert seen == [final] * 8  # once published, no builder replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
