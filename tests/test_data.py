"""The packaged data: what ships, its checksums, where tasks and curation read it, and that
nothing in the repository points outside it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from ssb_plugin import data
from ssb_plugin.curate.config import CurateConfig
from ssb_plugin.curate.problems import load_problems
from ssb_plugin.demo.easy import easy_problems, heldout_problems
from ssb_plugin.tasks import TASKS_DIR, task_configs


def _readme_table() -> dict[str, tuple[int, str]]:
    """file -> (rows, sha256) from the table in ssb_plugin/data/README.md."""
    out = {}
    for line in (data.PACKAGED_DIR / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0].endswith(".jsonl"):
            out[cells[0]] = (int(cells[1]), cells[2])
    return out


def _rows_sha(rows) -> str:
    """A checksum of rows as records (field order and number types kept), not of file bytes."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def _file_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_readme_lists_every_packaged_file_with_its_rows_and_sha256():
    table = _readme_table()
    files = {p.name for p in data.PACKAGED_DIR.glob("*.jsonl")}
    assert set(table) == files == set(data.SETS)
    for name, (rows, sha) in table.items():
        path = data.PACKAGED_DIR / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, name
        assert len(_file_rows(path)) == rows, name


def test_no_setting_means_the_packaged_copies(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert data.data_dir() == data.PACKAGED_DIR
    assert data.local_path("math500.jsonl") == data.PACKAGED_DIR / "math500.jsonl"
    monkeypatch.setenv(data.DATA_DIR_ENV, data.HUB)
    assert data.data_dir() is None and data.local_path("math500.jsonl") is None
    # the project's own set has no hub copy: always the package
    assert data.local_path("easy_heldout.jsonl") == data.PACKAGED_DIR / "easy_heldout.jsonl"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="math500.jsonl"):
        data.local_path("math500.jsonl")  # a directory missing a file is an error, never a fallback
    with pytest.raises(FileNotFoundError, match="ships no"):
        data.packaged("math_test5000.jsonl")


def test_task_yamls_name_packaged_files_and_no_hub_ids():
    """A task names only its file; the hub id is written once, in ssb_plugin.data.SETS."""
    for name, cfg in task_configs().items():
        kw = cfg.get("dataset_kwargs") or {}
        if "local_file" not in kw:
            continue
        assert kw["local_file"] in data.SETS, name
        assert not {"hub_path", "hub_name", "hub_split"} & set(kw), name


def test_hub_set_names_the_known_copies():
    assert data.hub_set("aime24.jsonl").hub_path == "Maxwell-Jia/AIME_2024"
    for file in ("easy_heldout.jsonl", "mine.jsonl"):  # no hub copy / not a set the package knows
        with pytest.raises(FileNotFoundError, match="no hub copy is known for"):
            data.hub_set(file)


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="needs lm-eval")
def test_task_loader_returns_the_same_rows_from_the_package_and_from_a_copy(monkeypatch, tmp_path):
    """The loader's rows checksum to the file's rows, with no setting and with SSB_DATA_DIR=copy."""
    spec = importlib.util.spec_from_file_location("ssb_task_utils_data", TASKS_DIR / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    for s in data.SETS.values():
        if s.hub_path is None:
            continue
        shutil.copy(data.PACKAGED_DIR / s.file, tmp_path / s.file)
    for s in data.SETS.values():
        kwargs = {"local_file": s.file}
        want = _rows_sha(_file_rows(data.PACKAGED_DIR / s.file))
        monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
        packaged = utils.load_docs(**kwargs)["test"]
        assert _rows_sha(packaged.to_list()) == want, s.file
        if s.hub_path is not None:
            monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
            assert _rows_sha(utils.load_docs(**kwargs)["test"].to_list()) == want, s.file


def test_curation_default_reads_the_packaged_gsm8k_train(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    cfg = CurateConfig.build({}, out=str(tmp_path / "o"), limit=5)
    assert (cfg.data, cfg.data_config, cfg.split) == ("openai/gsm8k", "main", "train")
    problems = load_problems(cfg)
    first = _file_rows(data.PACKAGED_DIR / "gsm8k_train.jsonl")[0]
    assert len(problems) == 5
    assert problems[0].question == first["question"].strip()
    assert problems[0].gold == first["answer"].rsplit("####", 1)[1].strip()
    assert problems[0].id == "openai/gsm8k/main/train:0"  # ids name the set, whichever copy was read


def test_curation_reads_the_hub_when_asked(monkeypatch, tmp_path):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"question": "Q?", "answer": "w\n#### 7"}])

    monkeypatch.setenv(data.DATA_DIR_ENV, data.HUB)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_problems(CurateConfig.build({}, out=str(tmp_path / "o"), limit=1))
    assert calls == [("openai/gsm8k", "main", "train[:1]")]
    assert problems[0].gold == "7"


def test_the_effect_benchmarks_heldout_set_is_shipped_and_disjoint_from_its_training_pairs():
    from ssb_plugin.demo.easy import wide_heldout_problems, wide_train_problems

    shipped = _file_rows(data.PACKAGED_DIR / "add20_heldout.jsonl")
    assert shipped == wide_heldout_problems() and len(shipped) == 200
    held = {r["question"] for r in shipped}
    train = {r["question"] for r in wide_train_problems(3000, seed=0)}
    assert not held & train
    assert len(held | train) == 400  # every pair a, b <= 20 is in exactly one of the two


def test_demo_heldout_set_is_shipped_and_disjoint_from_what_the_demo_curates():
    shipped = _file_rows(data.PACKAGED_DIR / "easy_heldout.jsonl")
    assert shipped == heldout_problems() and len(shipped) == 40
    held = {r["question"] for r in shipped}
    train = {r["question"] for r in easy_problems(500, seed=0, train_only=True)}
    assert not held & train
    assert len(held | train) == 81  # every one-digit pair is in exactly one of the two


# ---- nothing points outside the repository ----------------------------------------------------

# Paths that climb out of the checkout: a sibling `shared` folder, `..` from the root, absolute
# paths of development machines.
OUTSIDE = re.compile(r"\.\./shared|parent\s*/\s*\"shared\"|(REPO|ROOT|repo_root)\W{0,3}(parent|/\.\.)|/work/")


def _project_files(root: Path):
    """Every project file: the tree minus venvs, caches, run outputs and git's own directory
    (walked, not asked of git, so the check also runs in CI's `git archive` copy)."""
    skip_dirs = {"runs", "outputs", "build", "dist", "__pycache__"}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(
            p in skip_dirs or (p.startswith(".") and p != ".ci") or p.endswith(".egg-info") for p in rel.parts
        ):
            continue
        if path.is_file() and not path.is_symlink():
            yield rel, path


def test_nothing_in_the_repository_refers_to_a_folder_outside_it(repo_root):
    suffixes = (".py", ".sh", ".yml", ".yaml", ".toml", ".md", ".cfg")
    hits, seen = [], 0
    for rel, path in _project_files(repo_root):
        if not (path.suffix in suffixes or rel.as_posix() in ("Makefile", ".ci/run")):
            continue
        if path.resolve() == Path(__file__).resolve():
            continue  # this file spells the patterns
        seen += 1
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{rel}:{i}: {line.strip()}")
    assert seen > 50  # the walk found the project
    assert not hits, "\n".join(hits)
