"""The curation pipeline with a scripted generator and a real (tiny) scoring model: every kept record
carries the stored target of curation's teacher-forced pass, the manifest says how to read it, and
--max-kept stops the run."""

from __future__ import annotations

import numpy as np
import pytest
from support.scripted_backend import ScriptedBackend


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return ScriptedBackend(tiny_model_dir)


def _cfg(tmp_path, tiny_model_dir, **kw):
    from ssb_plugin.curate.config import CurateConfig
    from ssb_plugin.demo.easy import write_easy

    data = write_easy(tmp_path / "easy.jsonl", n=6, seed=0)
    return CurateConfig.build(
        out=str(tmp_path / "out"), model=str(tiny_model_dir), data=str(data), backend="transformers",
        chunk_size=2, progress=False, stored_topk=8, tail_samples=5, **kw,
    )  # fmt: skip


def test_kept_records_carry_the_stored_target(tmp_path, tiny_model_dir, backend):
    import torch
    from datasets import load_dataset

    from ssb_plugin.curate.pipeline import curate
    from ssb_plugin.record import chat_prompt_ids, validate_record

    m = curate(_cfg(tmp_path, tiny_model_dir), backend=backend)
    assert m.counts["kept"] == 6 and m.stored_topk == 8
    assert m.target.kind == "topk+tail" and m.target.temperatures == (1.0, 2.0)
    assert m.target.tail_samples == 5 and m.target.tail_temperature == 2.0
    rows = load_dataset(str(tmp_path / "out"), split="train")
    for i, row in enumerate(rows):
        validate_record(row, f"row {i}")
        prompt = chat_prompt_ids(backend.tokenizer, row["teacher_messages"])
        with torch.no_grad():
            logits = backend.model(torch.tensor([prompt + row["response_ids"]])).logits[0]
        lp = torch.log_softmax(logits[len(prompt) - 1 : -1].float(), -1)
        top = np.asarray(row["teacher_topk_ids"])
        np.testing.assert_allclose(
            row["teacher_topk_logprobs"], lp.gather(-1, torch.as_tensor(top)), atol=1e-5
        )
        for j, t in enumerate((1.0, 2.0)):  # the exact log-normaliser of the whole vocabulary
            np.testing.assert_allclose(
                np.asarray(row["teacher_log_norm"])[:, j], torch.logsumexp(lp / t, -1), atol=1e-4
            )
        tail = np.asarray(row["teacher_tail_ids"])
        assert tail.shape == (len(row["response_ids"]), 5)
        assert not any(set(t) & set(k) for t, k in zip(tail, top, strict=True))  # the tail excludes the top


def test_max_kept_stops_after_the_chunk_that_reaches_it(tmp_path, tiny_model_dir, backend):
    from ssb_plugin.curate.pipeline import curate

    m = curate(_cfg(tmp_path, tiny_model_dir, max_kept=3), backend=backend)
    assert m.counts["kept"] == 4  # chunks of 2: the second chunk reaches 3
    assert sum(m.counts.values()) == 4 and m.extra["complete"] and m.extra["kept_cap_reached"]
    calls = backend.calls
    again = curate(_cfg(tmp_path, tiny_model_dir, max_kept=3), backend=backend)  # a rerun does no more work
    assert again.counts == m.counts and backend.calls == calls
