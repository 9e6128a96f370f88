"""`python -m ssb_plugin.selfcheck`: the trained target must be at KL ~0 from the curating model on the
teacher's prompt (at the training temperature), and a one-position shift must be caught."""

from __future__ import annotations

import json

import pytest
from curated_fixture import cached_curated_set, one_thread, peaked_model_dir

from ssb_plugin.train.selfcheck import main


@pytest.fixture(scope="module")
def peaked(tiny_model_dir, tmp_path_factory):
    return peaked_model_dir(tiny_model_dir, tmp_path_factory.getbasetemp() / "models")


@pytest.fixture(scope="module")
def curated(peaked, tmp_path_factory):
    return cached_curated_set(peaked, tmp_path_factory.getbasetemp() / "curated", n=3, k=8)


@pytest.mark.parametrize("temperature", ["1", "2"])
def test_selfcheck_passes_on_an_aligned_set(peaked, curated, capsys, temperature):
    with one_thread():
        assert main([str(curated), "--model", str(peaked), "--limit", "3", "--temperature", temperature]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ok"] and summary["target"] == "topk+tail" and summary["temperature"] == float(temperature)
    assert abs(summary["identity_kl_per_token"]) < 1e-5 and summary["aligned_mean_abs_worst_row"] < 1e-4
    assert 0 < summary["tail_share"] < 1


def test_selfcheck_catches_a_one_position_shift(peaked, curated, tmp_path, capsys):
    from datasets import load_dataset

    from ssb_plugin.record import TARGET_FIELDS

    # a curation bug: every stored row one step late (the prompt_logprobs layout)
    cols = ("teacher_topk_ids", "teacher_topk_logprobs", *TARGET_FIELDS)
    ds = load_dataset(str(curated), split="train").map(lambda r: {c: r[c][1:] + r[c][-1:] for c in cols})
    bad = tmp_path / "shifted"
    (bad / "data").mkdir(parents=True)
    ds.to_parquet(str(bad / "data" / "shard-00000.parquet"))
    (bad / "manifest.json").write_text((curated / "manifest.json").read_text())
    with one_thread():
        assert main([str(bad), "--model", str(peaked), "--limit", "3"]) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not summary["ok"] and summary["identity_kl_per_token"] > 1e-2


def test_selfcheck_refuses_a_temperature_the_set_does_not_carry(peaked, curated, capsys):
    assert main([str(curated), "--model", str(peaked), "--temperature", "3"]) == 2
    assert "re-curate" in capsys.readouterr().err
