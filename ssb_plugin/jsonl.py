"""Reading JSON Lines input files: one object per line, blank lines skipped, errors naming the line."""

from __future__ import annotations

import json
from collections.abc import Iterable


class JsonlError(ValueError):
    """A line that is not a JSON object; the message names the source and the line number."""


def read_json_objects(lines: Iterable[str], where: str) -> list[dict]:
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise JsonlError(f"{where} line {lineno} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise JsonlError(f"{where} line {lineno} is not a JSON object")
        rows.append(row)
    return rows
