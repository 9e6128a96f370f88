"""`ssb-curate --ray`: the same run as curate.pipeline, its model stages as Ray Data actor pools.

The driver (this process) plans the chunks, claims the output directory and writes every file,
through the same `ChunkRun` steps as a single-process run; only the model work moves to actors:

- generate: a pool of `--ray-replicas` actors, each holding one engine (the configured backend,
  vLLM with its `--tensor-parallel-size` GPUs), takes one chunk at a time through rollouts,
  selection and the hinted teacher. A transformers backend scores its chunk in the same actor (the
  target pass needs the model it already holds).
- score (vLLM): a second Ray Data pass once the first has finished and its engines are gone,
  a pool of actors each holding the transformers copy, over the chunks kept as pending files. A
  scorer never shares a device with a live engine, and a run killed between the passes resumes
  without generating again.

Chunks arrive in plan order (`preserve_order`), so `--max-kept` stops where it does in one process,
and every request keeps its per-problem seed: the set equals the single-process one. An actor that
dies is restarted by Ray Data and its chunk retried; the driver killed, rerunning the same command
skips the finished chunks.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np

from ssb_plugin.curate.backends import backend_class, make_backend
from ssb_plugin.curate.backends.die_with_parent import engine_children_die_with_us
from ssb_plugin.curate.chunk import ChunkResult, Curator, add_targets
from ssb_plugin.curate.config import ConfigError, CurateConfig
from ssb_plugin.curate.run import ChunkRun, LazyScorer, open_run, two_phase
from ssb_plugin.record import Manifest


class GenerateStage:
    """A Ray Data actor: one engine; chunks (pickled problem lists) in, pickled results out."""

    def __init__(self, cfg: CurateConfig):
        from ssb_plugin.grading import warmup

        warmup()  # the grader's worker starts while the model loads
        self.cfg = cfg
        self.backend = make_backend(cfg, cfg.model_path())
        self.curator = Curator(cfg, self.backend)
        self.scores_here = not two_phase(cfg, type(self.backend))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for blob in batch["items"]:
            res = self.curator.generate_chunk(pickle.loads(blob))
            if self.scores_here:
                add_targets(self.cfg, res, self.backend.scoring_model)
            results.append(pickle.dumps((res, self.backend.info())))
        return {"chunk": batch["chunk"], "result": np.array(results, dtype=object)}


class ScoreStage:
    """A Ray Data actor: the transformers copy; pending chunks (JSON) in, scored results out."""

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg
        self.scorer = LazyScorer(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for text in batch["pending"]:
            res = ChunkResult.from_json(str(text))
            add_targets(self.cfg, res, self.scorer)
            results.append(pickle.dumps((res, None)))
        return {"chunk": batch["chunk"], "result": np.array(results, dtype=object)}


def connect(cfg: CurateConfig) -> None:
    """Start or join the cluster `--ray` names (once per process)."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "ray: --ray needs Ray Data in this environment (pip install 'ssb-plugin[ray]', i.e. ray[data])"
        ) from e
    if ray.is_initialized():
        return
    quiet: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": bool(cfg.progress)}
    if cfg.ray == "local":
        # the cluster's processes (raylet, GCS, its agents) end with this driver, kill -9 included
        with engine_children_die_with_us():
            ray.init(include_dashboard=False, **quiet)
    else:
        ray.init(address=cfg.ray, **quiet)


def _resources(cfg: CurateConfig, engine: bool) -> dict[str, float]:
    """Per actor: its GPUs on a GPU cluster (an engine: --tensor-parallel-size; a scorer: one), else a CPU."""
    import ray

    if ray.cluster_resources().get("GPU", 0) > 0:
        return {"num_gpus": float(cfg.tensor_parallel_size if engine and cfg.backend == "vllm" else 1)}
    return {"num_cpus": 1.0}


def _stage(cfg: CurateConfig, rows: list[dict[str, Any]], stage: type, engine: bool):
    """A Ray Data pass: rows (one per chunk, in plan order) through a pool of `stage` actors."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # results in plan order: --max-kept as in one process
    ctx.enable_progress_bars = bool(cfg.progress)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    return ds.map_batches(
        stage,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=1,
        concurrency=min(int(cfg.ray_replicas), max(1, len(rows))),
        **_resources(cfg, engine),
    ).iter_rows()


def _results(rows_out):
    for row in rows_out:
        res, info = pickle.loads(row["result"])
        yield int(row["chunk"]), res, info


def curate_on_ray(cfg: CurateConfig, on_progress=None) -> Manifest:
    """Run (or resume) curation into cfg.out with the model stages on Ray; returns the manifest."""
    wall = time.perf_counter()
    connect(cfg)
    run = open_run(cfg)
    run.on_progress = on_progress
    if not run.todo and (finished := run.out.finished_manifest()) is not None:
        return finished  # a complete set is never re-stamped by a rerun
    from transformers import AutoTokenizer

    run.tokenizer = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision)
    if run.todo and (run.pending or two_phase(cfg, backend_class(cfg))):
        _generate_all(cfg, run)
        _score_pending(cfg, run)
    elif run.todo:
        _generate_and_score(cfg, run)
    run.extra["ray_replicas"] = float(cfg.ray_replicas)
    return run.finish(wall)


def _chunk_rows(chunks) -> list[dict[str, Any]]:
    return [{"chunk": c, "items": pickle.dumps(part)} for c, part in chunks]


def _generate_and_score(cfg: CurateConfig, run: ChunkRun) -> None:
    with run.bar("curate", run.todo) as bar:
        for c, res, info in _results(_stage(cfg, _chunk_rows(run.todo), GenerateStage, engine=True)):
            if run.cap_reached():
                break
            run.info = info
            run.finish_chunk(c, res, bar)


def _generate_all(cfg: CurateConfig, run: ChunkRun) -> None:
    """Pass 1: the chunks not yet generated become pending files; the engines end with the pass."""
    left = run.to_generate()
    if not left or run.cap_reached_with_pending():
        return
    with run.bar("generate", left) as bar:
        for c, res, info in _results(_stage(cfg, _chunk_rows(left), GenerateStage, engine=True)):
            run.info = info
            run.keep_pending(c, res, bar)
            if run.cap_reached_with_pending():
                break


def _score_pending(cfg: CurateConfig, run: ChunkRun) -> None:
    """Pass 2: the pending chunks, in plan order, through the scorer actors."""
    ready = run.to_score()
    if not ready or run.cap_reached():
        return
    rows = [{"chunk": c, "pending": run.out.read_pending(c)} for c, _ in ready]
    with run.bar("score", ready) as bar:
        for c, res, _ in _results(_stage(cfg, rows, ScoreStage, engine=False)):
            if run.cap_reached():
                break
            run.finish_chunk(c, res, bar)
