"""Reading JSON Lines input files: one object per line, blank lines skipped, errors naming the line.

The one JSONL reader of the project (ssb-grade, ssb-curate, ssb-tasks --check-data). Lines are read
as bytes and decoded here, so a line that is not UTF-8 is reported with its file and line number
instead of a traceback from inside the file iterator.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path


class JsonlError(ValueError):
    """A line that is not a JSON object; the message names the source and the line number."""


def utf8(data: bytes, where: str, first_line: int = 1) -> str:
    """`data` decoded as UTF-8, or JsonlError naming the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise JsonlError(
            f"{where} line {line} is not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
            f"save the file as UTF-8"
        ) from None


def parse_line(line: str | bytes, where: str, lineno: int) -> dict | None:
    """The object on one line (None when blank); JsonlError naming `where` and `lineno`."""
    if isinstance(line, bytes):
        line = utf8(line, where, lineno)
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise JsonlError(f"{where} line {lineno} is not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise JsonlError(f"{where} line {lineno} is not a JSON object")
    return row


def iter_json_objects(lines: Iterable[str | bytes], where: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line."""
    for lineno, line in enumerate(lines, 1):
        row = parse_line(line, where, lineno)
        if row is not None:
            yield lineno, row


def read_json_objects(lines: Iterable[str | bytes], where: str) -> list[dict]:
    return [row for _, row in iter_json_objects(lines, where)]


def read_jsonl(path: str | Path, where: str | None = None) -> list[tuple[int, dict]]:
    """(line number, object) pairs of a JSONL file ('-': stdin). OSError if it cannot be opened."""
    where = where or str(path)
    if str(path) == "-":
        return list(iter_json_objects(sys.stdin.buffer, where))
    with open(path, "rb") as f:
        return list(iter_json_objects(f, where))
