"""SSBPlugin: light import, config keys merged into Axolotl's config with clear validation errors."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssb_plugin.train.args import SSBArgs


@pytest.fixture
def plugin_manager():
    from axolotl.integrations.base import PluginManager

    PluginManager._instance = None  # process-wide singleton: isolate tests
    yield PluginManager.get_instance()
    PluginManager._instance = None


def _base_cfg(tiny_model_dir, **kw):
    from axolotl.utils.dict import DictDefault

    return DictDefault(
        {
            "base_model": str(tiny_model_dir),
            "plugins": ["ssb_plugin.SSBPlugin"],
            "datasets": [{"path": "/nonexistent/curated", "type": "ssb_plugin.dataset"}],
            "micro_batch_size": 1,
            "gradient_accumulation_steps": 1,
            "learning_rate": 1e-4,
            "sequence_len": 256,
            "output_dir": "/tmp/unused",
            **kw,
        }
    )


def _validate(cfg):
    from axolotl.utils.config import prepare_plugins, validate_config

    prepare_plugins(cfg)
    return validate_config(cfg)


def test_plugin_module_stays_light():
    code = "import sys, ssb_plugin.train.plugin; bad = [m for m in ('ssb_plugin.train.trainer', 'ssb_plugin.train.loss', 'ssb_plugin.train.collator') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_defaults_are_the_paper_settings():
    a = SSBArgs()
    assert (a.ssb_temperature, a.ssb_kd_weight, a.ssb_ce_weight) == (2.0, 1.0, 0.0)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"ssb_temperature": 0}, "ssb_temperature must be > 0"),
        ({"ssb_kd_weight": -1}, "ssb_kd_weight must be >= 0"),
        ({"ssb_kd_weight": 0, "ssb_ce_weight": 0}, "both 0"),
        ({"ssb_chunk_size": 0}, "ssb_chunk_size"),
        ({"ssb_topk": 20}, "ssb_topk was removed"),
    ],
)
def test_args_validation_messages(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SSBArgs(**kw)


def test_keys_merge_into_axolotl_config(plugin_manager, tiny_model_dir):
    cfg = _validate(_base_cfg(tiny_model_dir, ssb_temperature=1.5, ssb_ce_weight=0.1))
    assert cfg.ssb_temperature == 1.5 and cfg.ssb_ce_weight == 0.1
    assert cfg.ssb_kd_weight == 1.0 and cfg.ssb_chunk_size == 1024  # defaults survive exclude_none
    from ssb_plugin.train.collator import SSBDataCollator
    from ssb_plugin.train.trainer import SSBTrainer

    assert plugin_manager.get_trainer_cls(cfg) is SSBTrainer
    assert plugin_manager.get_collator_cls_and_kwargs(cfg, is_eval=True)[0] is SSBDataCollator


def test_bad_values_fail_config_validation(plugin_manager, tiny_model_dir):
    with pytest.raises(ValueError, match="ssb_temperature must be > 0"):
        _validate(_base_cfg(tiny_model_dir, ssb_temperature=-2))


def test_non_ssb_dataset_is_refused(plugin_manager, tiny_model_dir):
    cfg = _base_cfg(tiny_model_dir, datasets=[{"path": "x.jsonl", "type": "chat_template"}])
    with pytest.raises(ValueError, match=r"datasets\[0\] has type 'chat_template'"):
        _validate(cfg)


def test_seed_makes_the_lora_init_repeatable(plugin_manager, tiny_model_dir):
    """Axolotl's own model loader, with the plugin: the same `seed` draws the same adapter whatever
    torch's RNG state was before; another seed draws another (Axolotl 0.19 seeds only the Trainer)."""
    import torch
    from axolotl.loaders import ModelLoader, load_tokenizer
    from axolotl.utils.config import normalize_config
    from support.axolotl_cpu import TINY_LORA

    def lora_a(seed: int) -> dict[str, torch.Tensor]:
        cfg = _validate(_base_cfg(tiny_model_dir, **TINY_LORA, seed=seed))
        normalize_config(cfg)
        import axolotl.loaders.model as loader

        if hasattr(loader, "PLUGIN_MANAGER"):  # 0.19 binds the singleton at import; the fixture renewed it
            loader.PLUGIN_MANAGER = plugin_manager
        torch.manual_seed(torch.seed())  # whatever state the process happens to be in
        model, _ = ModelLoader(cfg, load_tokenizer(cfg)).load()
        return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_A" in k}

    first, again, other = lora_a(5), lora_a(5), lora_a(6)
    assert first and first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in first)


def test_the_dataset_type_refuses_to_tokenise_unless_the_plugin_is_registered(plugin_manager, tmp_path):
    from ssb_plugin.record import RecordError
    from ssb_plugin.train.dataset import load

    cfg = {"plugins": ["ssb_plugin.SSBPlugin"]}  # listed, but nothing registered it
    # Axolotl 0.21's manager holds its built-in plugins as well: the message lists what is registered
    with pytest.raises(RecordError, match=r"SSBPlugin is not registered .*\(registered: .*plain SFT"):
        load(None, cfg, {"path": str(tmp_path)})
    plugin_manager.register("ssb_plugin.SSBPlugin")
    with pytest.raises(RecordError, match="no manifest.json"):  # registered: load goes on to read the set
        load(None, cfg, {"path": str(tmp_path)})


# Axolotl 0.19 logs a plugin that fails to import and goes on without it; 0.21 stops the run itself.
# (False in .venv-vllm, which has no Axolotl: there this module is only collected.)
AXOLOTL_SKIPS_FAILED_PLUGINS = importlib.util.find_spec("axolotl") is not None and importlib.metadata.version(
    "axolotl"
).split(".")[:2] == ["0", "19"]
IMPORT_FAILS = Path(__file__).parent / "support" / "plugin_import_fails"


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["import fails", "not listed"])
def test_an_ssb_config_without_its_plugin_never_trains(plugin, tiny_model_dir, tmp_path, tmp_path_factory):
    """The real `axolotl train` on an SSB dataset whose plugin cannot load, or is missing from
    `plugins:`, exits non-zero naming the cause, before a step of plain SFT."""
    from support.axolotl_cli import run_axolotl, training_log
    from support.axolotl_cpu import train_config
    from support.curated_fixture import cached_curated_set, one_thread

    with one_thread():
        curated = cached_curated_set(tiny_model_dir, tmp_path_factory.getbasetemp() / "curated", n=4, k=8)
    if plugin == "import fails":
        cfg = train_config(tiny_model_dir, curated, tmp_path, max_steps=1)
        pythonpath = os.pathsep.join(filter(None, [str(IMPORT_FAILS), os.environ.get("PYTHONPATH")]))
        proc = run_axolotl(cfg, tmp_path, launcher=False, env={"PYTHONPATH": pythonpath})
        assert "ssb_plugin.train.plugin is made to fail" in proc.output, proc.output[-4000:]
        expected = (
            "ssb_plugin.SSBPlugin is not loaded, because importing ssb_plugin.train.plugin fails"
            if AXOLOTL_SKIPS_FAILED_PLUGINS
            else "Could not load required plugin 'ssb_plugin.SSBPlugin'"
        )
    else:
        cfg = train_config(tiny_model_dir, curated, tmp_path, max_steps=1, plugins=None)
        proc = run_axolotl(cfg, tmp_path, launcher=False)
        expected = (
            "dataset type ssb_plugin.dataset needs the SSB trainer: add `plugins: [ssb_plugin.SSBPlugin]`"
        )
    assert proc.returncode != 0 and expected in proc.output, proc.output[-4000:]
    assert "Training completed" not in proc.output and training_log(cfg) == []
    assert not (Path(cfg["output_dir"]) / "adapter_model.safetensors").exists()
