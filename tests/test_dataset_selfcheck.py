"""`python -m ssb_plugin.selfcheck`: a curated set's stored top-k must match the model at P-1+j."""

from __future__ import annotations

import pytest
from support.curated_fixture import cached_curated_set, one_thread, peaked_model_dir

from ssb_plugin.train.selfcheck import check_rows, main, verdict


@pytest.fixture(scope="module")
def peaked(tiny_model_dir, tmp_path_factory):
    return peaked_model_dir(tiny_model_dir, tmp_path_factory.getbasetemp() / "models")


@pytest.fixture(scope="module")
def curated(peaked, tmp_path_factory):
    return cached_curated_set(peaked, tmp_path_factory.getbasetemp() / "curated", n=3, k=8)


def test_selfcheck_passes_on_an_aligned_set(peaked, curated, capsys):
    with one_thread():
        assert main([str(curated), "--model", str(peaked), "--limit", "3"]) == 0
    assert "OK" in capsys.readouterr().err


def test_selfcheck_catches_a_one_position_shift(peaked, curated):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(peaked)
    model = AutoModelForCausalLM.from_pretrained(peaked, dtype=torch.float32).eval()
    rows = list(load_dataset(str(curated), split="train"))
    with one_thread():
        good = check_rows(model, tok, rows)
        # a curation bug: rows stored for the token *being* generated one step late (prompt_logprobs layout)
        bad = [{**r, "teacher_topk_ids": r["teacher_topk_ids"][1:] + r["teacher_topk_ids"][-1:],
                "teacher_topk_logprobs": r["teacher_topk_logprobs"][1:] + r["teacher_topk_logprobs"][-1:]} for r in rows]  # fmt: skip
        bad_stats = check_rows(model, tok, bad)
    assert max(s["aligned_max_abs"] for s in good) < 1e-3
    assert verdict(good, 0.05)[0] and not verdict(bad_stats, 0.05)[0]
