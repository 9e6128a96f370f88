"""Comparing two curated sets the way a user would care: the same records, column for column."""

from __future__ import annotations

import json
from pathlib import Path


def same_set(a: Path, b: Path) -> int:
    """Assert every shard's every column is equal (the data, not the file's bytes: parquet metadata
    may differ), with the same outcomes and stats, and `b` complete with nothing pending; return
    the number of kept records."""
    import pyarrow.parquet as pq

    sa, sb = sorted((a / "data").glob("shard-*.parquet")), sorted((b / "data").glob("shard-*.parquet"))
    assert [f.name for f in sa] == [f.name for f in sb]
    for fa, fb in zip(sa, sb, strict=True):
        ta, tb = pq.read_table(fa), pq.read_table(fb)
        assert ta.column_names == tb.column_names
        for name in ta.column_names:
            assert ta[name].equals(tb[name]), f"{fa.name}: column {name} differs"
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["counts"] == mb["counts"] and ma["extra"]["stats"] == mb["extra"]["stats"]
    assert mb["extra"]["complete"] and not list((b / ".ssb-progress").glob("pending-*"))
    return ma["counts"]["kept"]
