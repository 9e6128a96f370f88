"""The one way this project writes a file: whole or not at all.

The new content goes to a hidden temp file beside the target (same directory, so the same
filesystem), is flushed and fsynced, then renamed over the target: a reader, a crash, Ctrl-C or
kill -9 sees the old file or the complete new one, never a short one. The directory is fsynced
after the rename so the rename itself survives a power cut. An exception or Ctrl-C removes the
temp file; only kill -9 can leave one (`.NAME.tmp-PID`, hidden, never read as data).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TEMP_GLOB = ".*.tmp-*"  # what a killed writer can leave behind


def temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write (by any library); on success it replaces `path`, else it is removed."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)  # the writer may have closed its handle: fsync by path
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave a temp file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """`open()` for writing that replaces `path` only when the block ends without an exception."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    import shutil

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def publish_dir(tmp: str | os.PathLike, out: str | os.PathLike, complete: Callable[[Path], bool]) -> Path:
    """Rename a fully built directory `tmp` (a sibling of `out`) to `out`; the first of concurrent
    builders wins. A complete `out` already there is kept and `tmp` dropped: replacing it would pull
    files from under a process reading them. An incomplete one (an older layout) is replaced."""
    import shutil

    tmp, out = Path(tmp), Path(out)
    if not complete(out):
        shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(tmp, out)
            return out
        except OSError:  # another builder published between the check and the rename
            if not complete(out):
                raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out
