"""ssb_plugin.atomic: the one file writer (issue 10 item 3 / issue 12: no short files, fsync)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ssb_plugin.atomic import atomic_open, atomic_write_text

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
