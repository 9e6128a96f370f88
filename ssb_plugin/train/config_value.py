"""One way to read a key from whatever Axolotl hands a hook: a DictDefault, a dict or a pydantic model."""

from __future__ import annotations

from typing import Any


def cfg_value(obj: Any, key: str) -> Any:
    """`obj[key]` of an Axolotl config (DictDefault) or a dataset entry (dict or pydantic model); None if unset."""
    if obj is None:
        return None
    return obj.get(key) if hasattr(obj, "get") else getattr(obj, key, None)
