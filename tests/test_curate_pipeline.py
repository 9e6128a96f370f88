"""The curation run's lifetime: an engine the run starts is closed however the run ends, and a run
that fails mid-way leaves its finished chunks for the resume."""

from __future__ import annotations

import pytest

from ssb_plugin.curate.backends import hf


class FailsOnSecondGenerate(hf.TransformersBackend):
    """The real transformers backend; its second generate() call (chunk 1's rollouts) raises."""

    closed = 0

    def __init__(self, cfg, model):
        super().__init__(cfg, model)
        self.calls = 0

    def generate(self, requests, desc="generate"):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("engine fell over in chunk 1")
        return super().generate(requests, desc=desc)

    def close(self):
        type(self).closed += 1
        super().close()


def test_a_failing_chunk_closes_the_engine_and_keeps_finished_chunks(tmp_path, tiny_model_dir, monkeypatch):
    from ssb_plugin.curate.config import CurateConfig
    from ssb_plugin.curate.pipeline import curate
    from ssb_plugin.curate.writer import OutputDir
    from ssb_plugin.demo.easy import write_easy

    monkeypatch.setattr(hf, "TransformersBackend", FailsOnSecondGenerate)  # what make_backend builds
    data = write_easy(tmp_path / "easy.jsonl", n=4, seed=0)
    cfg = CurateConfig.build(
        out=str(tmp_path / "out"), model=str(tiny_model_dir), data=str(data), backend="transformers",
        chunk_size=2, num_rollouts=2, rollout_max_tokens=4, teacher_max_tokens=4, stored_topk=4,
        tail_samples=2, threads=1, progress=False,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="engine fell over in chunk 1"):
        curate(cfg)
    assert FailsOnSecondGenerate.closed == 1
    assert sorted(OutputDir(tmp_path / "out").done_chunks()) == [0]  # chunk 0 is kept for the resume
