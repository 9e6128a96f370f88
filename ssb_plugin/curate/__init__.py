"""`ssb-curate`: build the SSB teacher/student set (docs/curation.md).

Modules, one job each: config (settings + validation), problems (source rows), backends (vllm,
transformers: ids + raw top-k), select (outcomes, trace choice), pipeline (the chunk loop),
writer (shards, progress, manifest, card), merge (--shard runs), hub (--push-to-hub), cli.
"""

from ssb_plugin.curate.config import ConfigError, CurateConfig

__all__ = ["ConfigError", "CurateConfig", "curate"]


def curate(cfg: CurateConfig, backend=None):
    from ssb_plugin.curate.pipeline import curate as _curate

    return _curate(cfg, backend=backend)
