"""Curation settings are declared once (CurateConfig fields); the CLI, RESULT_KEYS and the manifest
are derived from those declarations. These tests pin the derivations, not a copy of the list."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import get_args, get_type_hints

import pytest

from ssb_plugin.curate import cli, run
from ssb_plugin.curate.config import RESULT_KEYS, ConfigError, CurateConfig

FIELDS = {f.name: f for f in fields(CurateConfig)}
HINTS = get_type_hints(CurateConfig)


def _actions() -> dict[str, argparse.Action]:
    return {a.dest: a for a in cli.build_parser()._actions}


def test_every_setting_is_a_flag_with_help():
    actions = _actions()
    assert set(FIELDS) <= set(actions)
    for name, f in FIELDS.items():
        a = actions[name]
        assert a.option_strings[0] == "--" + name.replace("_", "-")
        assert f.metadata["help"] and a.help.startswith(f.metadata["help"])
        assert a.default is None  # an absent flag must not override the config file
        is_bool = isinstance(a, argparse.BooleanOptionalAction)
        assert is_bool == (bool in (HINTS[name], *get_args(HINTS[name])))


def test_flags_parse_to_the_declared_types(tmp_path):
    argv = ["--out", str(tmp_path / "o"), "--stored-topk", "3", "--grade-timeout", "1.5", "--threads", "1"]
    argv += ["--no-leak-filter", "--answer-fallback", "--vllm-kwargs", '{"swap_space": 4}', "--limit", "9"]
    cfg = cli.config_from_args(argv)
    assert (cfg.stored_topk, cfg.grade_timeout, cfg.threads, cfg.limit) == (3, 1.5, 1, 9)
    assert cli.config_from_args(argv + ["--target-temperatures", "2,1,3"]).target_temperatures == [
        1.0,
        2.0,
        3.0,
    ]
    assert cfg.leak_filter is False and cfg.answer_fallback is True
    assert cfg.vllm_kwargs == {"swap_space": 4}
    assert cfg.teacher_top_k == 50  # not given: the declared default


def test_flags_override_the_config_file_and_absent_flags_do_not(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("leak_filter: false\nstored_topk: 5\nseed: 3\n")
    cfg = cli.config_from_args(["--config", str(f), "--out", str(tmp_path / "o"), "--seed", "4"])
    assert (cfg.leak_filter, cfg.stored_topk, cfg.seed) == (False, 5, 4)


def test_choices_are_validated_from_the_declaration(tmp_path):
    for name, f in FIELDS.items():
        if f.metadata["choices"]:
            with pytest.raises(ConfigError, match=f"{name}: must be one of"):
                CurateConfig.build({}, out=str(tmp_path / "o"), **{name: "nonsense"})


def test_result_keys_are_the_fields_marked_result():
    assert RESULT_KEYS == tuple(n for n, f in FIELDS.items() if f.metadata["result"])
    # what a resumed/merged run must agree on, and what it need not
    assert {
        "model",
        "stored_topk",
        "tail_samples",
        "target_temperatures",
        "max_kept",
        "seed",
        "chunk_size",
        "system_prompt",
        "leak_filter",
    } <= set(RESULT_KEYS)
    assert not {"out", "shard", "overwrite", "progress", "threads", "device"} & set(RESULT_KEYS)


def test_manifest_records_each_setting_at_its_declared_path(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "tokenizer_fingerprint", lambda tok: {"vocab_sha256": "x"})
    cfg = CurateConfig.build({}, out=str(tmp_path / "o"), model="m", limit=5, stored_topk=7, shard="1/3")
    done = {
        0: {"counts": {"kept": 2, "no_wrong": 1}, "timings": {"teacher_s": 1.0}, "stats": {"rollouts": 12}}
    }
    m = run.build_manifest(
        cfg, None, {"engine": "e"}, done, [(0, []), (1, [])], {"model_load_s": 2.0}, {"data": "d"}
    )
    d = json.loads(m.to_json())
    paths = [(name, p) for name, f in FIELDS.items() for p in f.metadata["manifest"]]
    assert len(paths) >= 20
    for name, path in paths:
        node = d
        for key in path.split("."):
            node = node[key]
        assert node == getattr(cfg, name), path
    # the layout docs/curation.md and merge rely on
    assert (m.stored_topk, m.target.stored_topk, m.source["shard"]) == (7, 7, "1/3")
    assert m.target.kind == "topk+tail" and m.target.temperatures == (1.0, 2.0)
    assert m.sampling["rollout"] == {
        "n": 4,
        "temperature": 0.8,
        "top_k": 50,
        "top_p": 1.0,
        "max_tokens": 8192,
    }
    assert m.extra["settings"] == cfg.result_settings() and m.extra["complete"] is False
    assert m.counts["kept"] == 2 and m.counts["teacher_wrong"] == 0 and m.extra["stats"] == {"rollouts": 12}
