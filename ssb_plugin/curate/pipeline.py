"""The curation run in this process: problems -> chunks (each through `chunk.Curator`) -> shards + manifest.

A backend with full logits of its own (transformers) generates and scores each chunk in turn. One
without (vLLM) runs in two phases, so the scoring model never shares a device with a live engine:
every chunk is generated and kept as a pending file, the engine is shut down, then a transformers
copy loads and scores the pending chunks in plan order. A run killed in either phase resumes where
it stopped (pending chunks are not generated again). Every request carries a seed derived from
(seed, problem id, role, index): a problem's records are the same whatever batch it lands in.
With `--ray` the same run goes to curate.on_ray.
"""

from __future__ import annotations

import time
from collections import defaultdict

from ssb_plugin.curate.backends import backend_class, make_backend
from ssb_plugin.curate.chunk import Curator
from ssb_plugin.curate.config import ConfigError, CurateConfig
from ssb_plugin.curate.run import open_run, resolve, two_phase
from ssb_plugin.record import Manifest

__all__ = ["curate", "resolve"]


def _open_backend(cfg: CurateConfig, backend, needed: bool, extra: defaultdict[str, float]):
    """(backend, tokenizer, backend info): the model loads only when chunks are left to generate."""
    if backend is None and needed:
        from ssb_plugin.grading import warmup

        warmup()  # start the grader's worker while the model loads
        t = time.perf_counter()
        backend = make_backend(cfg, cfg.model_path())
        extra["model_load_s"] += time.perf_counter() - t
    if backend is not None:
        return backend, backend.tokenizer, backend.info()
    from transformers import AutoTokenizer  # nothing left to generate: the manifest needs the tokenizer

    return None, AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision), {"backend": cfg.backend}


def curate(cfg: CurateConfig, backend=None, on_progress=None) -> Manifest:
    """Run (or resume) curation into cfg.out; returns the final manifest."""
    wall = time.perf_counter()
    if cfg.ray:
        if backend is not None:
            raise ConfigError(
                "ray: a run on Ray builds its engines in Ray actors; it takes no backend object"
            )
        from ssb_plugin.curate.on_ray import curate_on_ray

        return curate_on_ray(cfg, on_progress)
    run = open_run(cfg, check_model=backend is None)
    run.on_progress = on_progress
    if not run.todo and (finished := run.out.finished_manifest()) is not None:
        return finished  # a complete set is never re-stamped by a rerun
    own_backend = backend is None
    backend, run.tokenizer, run.info = _open_backend(cfg, backend, bool(run.to_generate()), run.extra)
    try:
        # pending chunks: a two-phase run (same backend: it is a resume setting) stopped before scoring
        if run.todo and (
            run.pending or two_phase(cfg, type(backend) if backend is not None else backend_class(cfg))
        ):
            run.generate_all(Curator(cfg, backend) if backend is not None else None)
            if own_backend and backend is not None:
                backend.close()  # the engine's memory is free before the scorer loads
                backend = None
            run.score_pending()
        elif run.todo:
            run.generate_and_score(Curator(cfg, backend))
    finally:  # an engine this run started is shut down however the run ends (vLLM holds GPU memory)
        if own_backend and backend is not None:
            backend.close()
    return run.finish(wall)
