"""`ssb-curate`: build the SSB teacher/student set (docs/curation.md).

Modules, one job each: config (settings + validation), problems (source rows), backends (vllm,
transformers: ids + raw top-k), select (outcomes, trace choice), chunk (one chunk through the
method), targets (the stored target), run (a run's bookkeeping), pipeline (the run in this
process), on_ray (the run on Ray Data), writer (shards, progress, manifest, card), merge (--shard
runs), hub (--push-to-hub), cli.
"""

from ssb_plugin.curate.config import ConfigError, CurateConfig

__all__ = ["ConfigError", "CurateConfig", "curate"]


def curate(cfg: CurateConfig, backend=None):
    from ssb_plugin.curate.pipeline import curate as _curate

    return _curate(cfg, backend=backend)
