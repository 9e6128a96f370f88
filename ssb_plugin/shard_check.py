"""Check the parquet shards of a curated set before anything reads them row by row.

A truncated or damaged shard otherwise surfaces deep inside `datasets` as "Directory ... is neither
a Dataset directory nor a DatasetDict directory"; this names the file. Only the parquet footers are
read (cheap), which is where a truncated copy fails.
"""

from __future__ import annotations

import os
from pathlib import Path

from ssb_plugin.record import SHARD_GLOB, RecordError


def shard_rows(root: str | os.PathLike) -> dict[Path, int]:
    """{shard file: rows} of a local curated set; RecordError naming the first file that is not parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {}
    for f in sorted(Path(root).glob(SHARD_GLOB)):
        try:
            rows[f] = pq.ParquetFile(f).metadata.num_rows
        except (pa.ArrowException, OSError) as e:
            raise RecordError(
                f"{f}: not a valid parquet file ({e}); the shard is damaged (a truncated copy?): copy it "
                f"again or re-curate"
            ) from None
    return rows


def check_kept_rows(root: str | os.PathLike, kept: int | None) -> int:
    """The rows of all shards, checked against the manifest's `kept` count when it is known."""
    total = sum(shard_rows(root).values())
    if kept is not None and total != kept:
        raise RecordError(
            f"{root}: its manifest counts {kept} kept records but its shards hold {total} rows; "
            f"shards were deleted or added after curation"
        )
    return total


def check_configured_sets(datasets) -> None:
    """Every local curated set named by an Axolotl `datasets:` list (type ssb_plugin.dataset): its
    shards are parquet (called before Axolotl's own loader, which would bury the cause)."""
    for entry in datasets or []:
        get = entry.get if hasattr(entry, "get") else lambda k, e=entry: getattr(e, k, None)
        path = Path(str(get("path")))
        if str(get("type") or "").replace(":", ".") == "ssb_plugin.dataset" and path.is_dir():
            shard_rows(path)
