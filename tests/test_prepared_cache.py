"""Axolotl's prepared-dataset cache never outlives the curated set it was built from.

Unit: the set fingerprint follows every file `datasets` reads; the cache directory follows the sets,
the training tokenizer, `ssb_temperature` and `ssb_teacher`. Real CLI: a set re-curated with another
tokenizer at the same path is refused, a deleted set is an error, a corrupted one is rebuilt (and
fails), rather than any of them training on the cached rows of the first set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.axolotl_cli import run_axolotl, training_log
from support.axolotl_cpu import train_config
from support.curated_fixture import cached_curated_set, one_thread

from ssb_plugin.record import RecordError
from ssb_plugin.train.prepared_cache import PREFIX, check_and_key, set_fingerprint


@pytest.fixture(scope="module")
def tiny_set(tiny_model_dir, tmp_path_factory):
    return cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=8)


@pytest.fixture(scope="module")
def tiny_tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def _cfg(path: Path, prepared: Path, **kw):
    from axolotl.utils.dict import DictDefault

    return DictDefault(
        {
            "datasets": [{"path": str(path), "type": "ssb_plugin.dataset"}],
            "dataset_prepared_path": str(prepared),
            **kw,
        }
    )


def test_fingerprint_follows_every_file_datasets_reads(tiny_set, tmp_path):
    s = _copy(tiny_set, tmp_path / "set")
    base, _ = set_fingerprint(str(s))
    assert set_fingerprint(str(s))[0] == base  # deterministic
    (s / ".ssb-progress").mkdir(exist_ok=True)
    (s / ".ssb-progress" / "note.json").write_text("{}")  # hidden: datasets never reads it
    assert set_fingerprint(str(s))[0] == base
    shard = next((s / "data").glob("*.parquet"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1  # one flipped bit inside a shard (same size)
    shard.write_bytes(bytes(data))
    flipped = set_fingerprint(str(s))[0]
    assert flipped != base
    (s / "data" / "extra.parquet").write_bytes(b"x")  # a file datasets would also load
    assert set_fingerprint(str(s))[0] not in (base, flipped)


def test_deleted_or_missing_set_is_a_clear_error(tiny_set, tmp_path):
    s = _copy(tiny_set, tmp_path / "set")
    shutil.rmtree(s)
    with pytest.raises(RecordError, match=r"set .*/set: not found \(deleted or moved\?\)"):
        set_fingerprint(str(s))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match="no manifest.json"):
        set_fingerprint(str(tmp_path / "empty"))
    # `owner/name` may be a hub id or a relative directory: the message covers both, never a traceback
    with pytest.raises(RecordError, match=r"nobody/nothing: not found \(no local directory .*no hub dataset"):
        set_fingerprint("nobody/nothing")


def test_cache_dir_is_keyed_by_set_tokenizer_and_row_options(tiny_set, tiny_tok, tmp_path):
    s = _copy(tiny_set, tmp_path / "set")
    cfg = _cfg(s, tmp_path / "prepared")
    key = check_and_key(cfg, tiny_tok)
    assert cfg.dataset_prepared_path == str(tmp_path / "prepared" / (PREFIX + key))
    assert check_and_key(cfg, tiny_tok) == key  # rerun on the same cfg: not nested twice
    assert cfg.dataset_prepared_path == str(tmp_path / "prepared" / (PREFIX + key))
    assert check_and_key(_cfg(s, tmp_path / "prepared"), tiny_tok) == key  # stable across processes
    assert check_and_key(_cfg(s, tmp_path / "prepared", ssb_temperature=1.0), tiny_tok) != key
    assert check_and_key(_cfg(s, tmp_path / "prepared", ssb_teacher="online"), tiny_tok) != key
    (s / "manifest.json").write_text((s / "manifest.json").read_text().replace('"seed": 0', '"seed": 7'))
    assert check_and_key(_cfg(s, tmp_path / "prepared"), tiny_tok) != key  # re-curated
    assert check_and_key(_cfg(s, None), tiny_tok) is not None  # Axolotl's default path, keyed too


def test_no_curated_set_leaves_the_config_alone(tiny_tok, tmp_path):
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault({"datasets": [{"path": "x.jsonl", "type": "alpaca"}], "dataset_prepared_path": "p"})
    assert check_and_key(cfg, tiny_tok) is None and cfg.dataset_prepared_path == "p"


@pytest.mark.slow
def test_real_cli_never_trains_on_a_stale_prepared_cache(
    tiny_model_dir, smollm2_dir, tiny_set, tmp_path, tmp_path_factory
):
    """One training run fills the cache; then the set at that path is replaced by one curated with
    another tokenizer, deleted, and restored with a truncated shard: each run must fail without a
    training step."""
    with one_thread():
        other = cached_curated_set(
            smollm2_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=16, max_new_tokens=12
        )
    path = _copy(tiny_set, tmp_path / "runs" / "ssb-set")

    def run(name: str):
        """A run of the same config with the same prepared cache; its own output_dir for its log."""
        cfg = train_config(
            tiny_model_dir,
            path,
            tmp_path,
            max_steps=1,
            dataset_prepared_path=str(tmp_path / "prepared"),
            output_dir=str(tmp_path / name / "out"),
        )
        return run_axolotl(cfg, tmp_path / name, launcher=False), training_log(cfg)

    first, log = run("run1")
    assert first.returncode == 0, first.output[-4000:]
    assert [x for x in log if "ssb_kd" in x]

    _copy(other, path)  # re-curated at the same path, by a model with another tokenizer
    recurated, log = run("run2")
    assert recurated.returncode != 0
    assert "differs from the curated set's" in recurated.output  # its chat template, here
    assert log == []

    shutil.rmtree(path)  # deleted
    deleted, log = run("run3")
    assert deleted.returncode != 0
    assert f"curated set {path}: not found (deleted or moved?)" in deleted.output
    assert log == []

    _copy(tiny_set, path)  # the first set again, but a shard cut short: rebuilt, so the damage shows
    shard = next((path / "data").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-100])
    corrupted, log = run("run4")
    assert corrupted.returncode != 0
    assert "Loading prepared dataset from disk" not in corrupted.output
    assert log == []
