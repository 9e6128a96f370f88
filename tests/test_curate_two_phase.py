"""A backend with no scoring model of its own (vLLM) runs in two phases: every chunk generated and
kept as a pending file, the engine closed, then a transformers copy scores the pending chunks. The
set equals the one-phase set byte for byte; the scorer never loads while the engine is open; a run
stopped between the phases resumes without generating again."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from support.scripted_backend import ScriptedBackend, ScriptedGenerator


def _cfg(tmp_path, tiny_model_dir, out, **kw):
    from ssb_plugin.curate.config import CurateConfig
    from ssb_plugin.demo.easy import write_easy

    data = write_easy(tmp_path / "easy.jsonl", n=6, seed=0)
    return CurateConfig.build(
        out=str(tmp_path / out), model=str(tiny_model_dir), data=str(data), backend="transformers",
        chunk_size=2, progress=False, stored_topk=8, tail_samples=5, **kw,
    )  # fmt: skip


def _data(root):
    from ssb_plugin.curate.writer import OutputDir

    return {f.name: pq.read_table(f) for f in OutputDir(root).shard_files()}


@pytest.fixture
def engines(tiny_model_dir, monkeypatch):
    """Each run builds its own scripted generator (as it would an engine); the scorer records
    whether that engine was closed when it loaded."""
    from ssb_plugin.curate import pipeline
    from ssb_plugin.curate.backends import hf

    built: list[ScriptedGenerator] = []
    scorer_loads: list[bool] = []  # per load: every engine closed by then

    def make_backend(cfg, model):
        built.append(ScriptedGenerator(tiny_model_dir))
        return built[-1]

    real_load = hf.load_scoring_model

    def load_scoring_model(cfg, model):
        scorer_loads.append(all(b.closed for b in built))
        return real_load(cfg, model)

    monkeypatch.setattr(pipeline, "make_backend", make_backend)
    monkeypatch.setattr(hf, "load_scoring_model", load_scoring_model)
    return built, scorer_loads


def test_two_phase_set_equals_one_phase_and_the_scorer_loads_after_the_engine_closes(
    tmp_path, tiny_model_dir, engines
):
    from ssb_plugin.curate.pipeline import curate
    from ssb_plugin.curate.writer import OutputDir

    built, scorer_loads = engines
    one = curate(_cfg(tmp_path, tiny_model_dir, "one"), backend=ScriptedBackend(tiny_model_dir))
    two = curate(_cfg(tmp_path, tiny_model_dir, "two"))
    assert len(built) == 1 and built[0].closed and scorer_loads == [True]
    assert two.counts == one.counts and one.counts["kept"] == 6
    a, b = _data(tmp_path / "one"), _data(tmp_path / "two")
    assert sorted(a) == sorted(b) == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    for name in a:
        assert a[name].equals(b[name]), name  # every column, the stored target's included
    assert OutputDir(tmp_path / "two").pending_chunks() == []
    assert not list((tmp_path / "two" / ".ssb-progress").glob("pending-*"))
    assert two.extra["complete"] and "scorer_load_s" in two.timings


def test_a_run_stopped_between_the_phases_resumes_without_generating_again(
    tmp_path, tiny_model_dir, engines, monkeypatch
):
    from ssb_plugin.curate.backends import hf
    from ssb_plugin.curate.pipeline import curate
    from ssb_plugin.curate.writer import OutputDir

    built, _ = engines
    working_load = hf.load_scoring_model

    def scorer_fails(cfg, model):
        raise MemoryError("the scorer did not fit")

    monkeypatch.setattr(hf, "load_scoring_model", scorer_fails)
    with pytest.raises(MemoryError):
        curate(_cfg(tmp_path, tiny_model_dir, "set"))
    assert OutputDir(tmp_path / "set").pending_chunks() == [0, 1, 2] and not _data(tmp_path / "set")
    assert len(built) == 1 and built[0].closed

    monkeypatch.setattr(hf, "load_scoring_model", working_load)
    resumed = curate(_cfg(tmp_path, tiny_model_dir, "set"))
    assert len(built) == 1  # nothing left to generate: no engine was started
    reference = curate(_cfg(tmp_path, tiny_model_dir, "ref"), backend=ScriptedBackend(tiny_model_dir))
    assert resumed.counts == reference.counts and resumed.extra["complete"]
    a, b = _data(tmp_path / "set"), _data(tmp_path / "ref")
    assert sorted(a) == sorted(b) and all(a[n].equals(b[n]) for n in a)


def test_max_kept_in_two_phases_stops_where_one_phase_does(tmp_path, tiny_model_dir, engines):
    from ssb_plugin.curate.pipeline import curate

    built, _ = engines
    m = curate(_cfg(tmp_path, tiny_model_dir, "capped", max_kept=3))
    assert m.counts["kept"] == 4 and m.extra["kept_cap_reached"]  # chunks of 2: the second reaches 3
    assert built[0].calls == 4  # two chunks generated (rollouts + teacher each), the third never
