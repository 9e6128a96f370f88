"""The pipeline report: built from real-format artefacts (manifest, log history, lm-eval results)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ssb_plugin.demo.compare import paired_change, verdict
from ssb_plugin.demo.report import SECTIONS, accuracy_rows, build_report
from ssb_plugin.record import Manifest
from ssb_plugin.train.training_log import LOG_FILE, read_log_history


def _lm_eval_results(
    path: Path, em: float, pm: float, per_problem: dict[str, list[float]] | None = None
) -> None:
    """lm-eval's on-disk layout: results_*.json and, per task, samples_<task>_*.jsonl."""
    nested = path / "some__model"
    nested.mkdir(parents=True)
    for task, scores in (per_problem or {}).items():
        (nested / f"samples_{task}_2026-11-26T00-00-00.jsonl").write_text(
            "".join(
                json.dumps({"doc_id": i, "exact_match": v, "resps": [["x"]]}) + "\n"
                for i, v in enumerate(scores)
            )
        )
    (nested / "results_2026-11-26T00-00-00.json").write_text(
        json.dumps(
            {
                "results": {
                    "ssb_gsm8k": {
                        "alias": "ssb_gsm8k",
                        "exact_match,none": em,
                        "exact_match_stderr,none": 0.1,
                    },
                    "ssb_math500": {"exact_match,none": em / 2, "paper_match,none": pm},
                },
                "n-samples": {"ssb_gsm8k": {"original": 1319, "effective": 20}},
                "higher_is_better": {
                    "ssb_gsm8k": {"exact_match": True},
                    "ssb_math500": {"exact_match": True, "paper_match": True},
                },
            }
        )
    )


def test_accuracy_table_has_one_column_per_task_metric(tmp_path):
    _lm_eval_results(tmp_path / "a", 0.25, 0.1)
    header, rows = accuracy_rows({"base": json.loads(next((tmp_path / "a").rglob("*.json")).read_text())})
    assert header == ["model", "ssb_gsm8k exact_match", "ssb_math500 exact_match", "ssb_math500 paper_match"]
    assert rows == [["base", "25.0% ± 10.0 (n=20)", "12.5%", "10.0%"]]


def test_log_history_callback_writes_one_line_per_log(tmp_path):
    from types import SimpleNamespace

    from ssb_plugin.train.callbacks import LogHistoryCallback  # transformers: loaded here, not at collection

    cb = LogHistoryCallback(tmp_path)
    state = SimpleNamespace(is_world_process_zero=True, global_step=1, epoch=0.5)
    cb.on_log(None, state, None, logs={"loss": 1.5, "ssb_kd": 1.5})
    state.global_step = 2
    cb.on_log(None, state, None, logs={"loss": 1.0, "ssb_kd": 1.0})
    cb.on_log(
        None, SimpleNamespace(is_world_process_zero=False, global_step=3, epoch=1), None, logs={"loss": 9}
    )
    assert [h["loss"] for h in read_log_history(tmp_path)] == [1.5, 1.0]
    assert (tmp_path / LOG_FILE).exists()


def test_report_has_every_section_and_a_plot(tmp_path):
    curated = tmp_path / "curated"
    curated.mkdir()
    Manifest(
        model="tiny", backend="vllm", counts={"kept": 3, "no_correct": 5}, timings={"rollout": 2.0}
    ).save(curated)
    train = tmp_path / "lora"
    train.mkdir()
    (train / LOG_FILE).write_text(
        "".join(
            json.dumps(
                {"step": s, "epoch": s / 2, "loss": 2.0 / s, "ssb_kd": 2.0 / s, "grad_norm": 1.0}
                | {"ssb_teacher_tail_mass": 0.6, "ssb_topk_overlap": 0.5 + s / 10, "ssb_kl_max": 3.0 / s}
            )
            + "\n"
            for s in (1, 2, 4)
        )
    )
    # 20 problems: 4 -> 6 right; the two that flipped are within the paired standard error
    base = [1.0] * 4 + [0.0] * 16
    ssb = [1.0] * 6 + [0.0] * 14
    _lm_eval_results(tmp_path / "eval_base", 0.2, 0.0, {"ssb_gsm8k": base})
    _lm_eval_results(tmp_path / "eval_ssb", 0.3, 0.1, {"ssb_gsm8k": ssb})
    kl = tmp_path / "heldout_kl.json"
    kl.write_text(
        json.dumps(
            {
                "temperature": 2.0,
                "ids": ["a", "b", "c"],
                "kl": {"base": [0.5, 0.6, 0.7], "ssb": [0.3, 0.45, 0.5]},
            }
        )
    )
    timings = tmp_path / "timings.json"
    timings.write_text(
        json.dumps(
            {
                "curate": 12.0,
                "eval_base": 20.0,
                "wall": 33.0,
                "lanes": {"curate": "main", "eval_base": "side"},
            }
        )
    )
    report = build_report(
        tmp_path / "report.md",
        curated,
        train,
        {"base": tmp_path / "eval_base", "ssb": tmp_path / "eval_ssb"},
        timings,
        heldout_kl=kl,
        heldout_curated=curated,
    )
    text = report.read_text()
    for section in SECTIONS:
        assert section in text
    assert "| base | 20.0% ± 10.0 (n=20)" in text and "| ssb | 30.0% ± 10.0 (n=20)" in text
    assert "| kept | 3 |" in text and "| no_correct | 5 |" in text
    # paired change: diffs are 0.1 * (2 ones, 18 zeros) -> mean 10.0, SE 6.9 -> "larger"; honest wording
    assert (
        "| ssb_gsm8k exact_match (n=20) | 20.0% | 30.0% | 10.0 ± 6.9 | yes: 1.5 standard errors up |" in text
    )
    # KL per record 0.5/0.6/0.7 -> 0.3/0.45/0.5: the paired SE is that of the differences
    assert "| 0.6000 ± 0.0577 | 0.4167 ± 0.0601 | -0.1833 ± 0.0167 | yes: 11.0 standard errors down |" in text
    # the training summary: per-epoch means, not first vs last step
    assert "| 1 | 2 | 1.5000 |" in text and "| 2 | 1 | 0.5000 |" in text
    # timings: each stage with the lane that ran it (from timings.json, not a list in the report)
    assert (
        "| curate | main | 12 |" in text
        and "| eval_base | side | 20 |" in text
        and "| wall |  | 33 |" in text
    )
    assert "its lanes run at once" in text
    png = tmp_path / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the diagnostics are plotted series: 6 panels, two rows
    assert "Series: loss, ssb_kd, grad_norm, ssb_teacher_tail_mass, ssb_topk_overlap, ssb_kl_max." in text


def test_verdict_never_claims_a_change_within_its_standard_error():
    assert verdict(*paired_change({0: 0.0, 1: 1.0}, {0: 1.0, 1: 0.0})[:2]).startswith("no:")  # flips cancel
    assert verdict(*paired_change({0: 0.0, 1: 1.0}, {0: 0.0, 1: 1.0})[:2]) == "no change"
    assert verdict(0.05, 0.1).startswith("no")
    assert verdict(-0.05, 0.05).startswith("no")  # equal to its SE is not larger
    assert verdict(0.3, 0.1) == "yes: 3.0 standard errors up"
    assert verdict(0.1, 0.0) == "yes: every item moved by the same amount"
    assert verdict(float("nan"), float("nan")) == "not measured"
    assert paired_change({0: 1.0}, {1: 0.0})[2] == 0  # only items scored on both sides are paired


def test_missing_eval_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no lm-eval results"):
        build_report(tmp_path / "r.md", None, None, {"base": tmp_path})


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.timeout(2400)  # ~7 min alone; it shares 2 cores with the other test worker
def test_demo_pipeline_end_to_end(repo_root, tmp_path):
    """The demo module `make demo` runs after the setup (`ssb-demo`), on a small slice, every stage
    for real, with no data setting: the held-out set and the eval data come from the package."""
    env = {k: v for k, v in os.environ.items() if k != "SSB_DATA_DIR"}
    run = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "ssb_plugin.demo.pipeline",
        str(run),
        "--vllm-venv",
        str(repo_root / ".venv-vllm"),
    ]
    cmd += ["--problems", "24", "--heldout", "12", "--eval-limit", "3", "--gen-toks", "64"]
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (run / "report.md").read_text()
    for section in SECTIONS:
        assert section in text, text
    # accuracy rows for both models, read from real lm-eval output, with standard errors
    assert "| base |" in text and "| ssb |" in text
    assert "ssb_gsm8k exact_match" in text and "ssb_math500 paper_match" in text
    assert "ssb_easy_heldout exact_match (n=12)" in text  # the held-out problems, paired
    assert re.search(r"\| base \| \d+\.\d% ± \d+\.\d \(n=12\)", text), text
    # curation counts from the manifests; at least one record was kept and trained on
    manifest = Manifest.load(run / "curated")
    assert manifest.counts["kept"] >= 1 and f"| kept | {manifest.counts['kept']} |" in text
    assert sum(Manifest.load(run / "heldout_curated").counts.values()) == 12
    # the held-out KL: one value per kept held-out record for each model, on problems never trained on
    kl = json.loads((run / "heldout_kl.json").read_text())
    assert len(kl["kl"]["base"]) == len(kl["kl"]["ssb"]) == len(kl["ids"])
    trained = {json.loads(x)["question"] for x in (run / "problems.jsonl").read_text().splitlines()}
    held = {json.loads(x)["question"] for x in (run / "heldout.jsonl").read_text().splitlines()}
    assert not trained & held
    history = read_log_history(run / "lora")
    assert any("ssb_kd" in h for h in history)
    assert "| epoch | logged steps | mean loss |" in text
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "lora" / "adapter_model.safetensors").exists()
    for log in ("curate_heldout.log", "eval_base.log"):  # vLLM ran in-process (pipeline.VLLM_IN_PROCESS)
        text = (run / "logs" / log).read_text()
        assert "(MainProcess pid=" in text and "(EngineCore pid=" not in text and "(Worker pid=" not in text
    timings = json.loads((run / "timings.json").read_text())
    stages = {"curate", "curate_heldout", "train", "merge", "eval_base", "eval_ssb", "heldout_kl"}
    assert stages <= set(timings) and "embedded_model" in timings
    # the two lanes overlapped: the elapsed time is less than the stages' sum
    assert timings["wall"] < sum(timings[k] for k in stages)
    assert (run / "logs" / "curate_heldout.log").read_text().startswith("$ ")


def test_run_pipeline_sh_only_sets_up_and_calls_the_module(repo_root):
    """Shell keeps what must be shell: the venv build, then the Python module."""
    script = (repo_root / "scripts" / "run_pipeline.sh").read_text()
    assert "scripts/setup_env.sh all" in script and "-m ssb_plugin.demo.pipeline" in script
    assert "<<" not in script  # no Python heredocs
    assert "<<" not in (repo_root / "scripts" / "test.sh").read_text()


def test_heldout_kl_reads_the_trained_target(tiny_model_dir, tmp_path):
    """The demo's held-out KL: one value per record and model, through the one identity check
    (ssb_plugin.train.identity), finite and positive from the student's prompt."""
    import math

    from support.curated_fixture import cached_curated_set

    from ssb_plugin.demo.heldout_kl import heldout_kl

    data = cached_curated_set(tiny_model_dir, tmp_path / "curated", n=3, k=8)
    got = heldout_kl(data, {"base": str(tiny_model_dir)}, temperature=2.0)
    assert got["temperature"] == 2.0 and len(got["ids"]) == 3
    assert len(got["kl"]["base"]) == 3 and all(math.isfinite(v) and v > 0 for v in got["kl"]["base"])
