"""The pipeline report: built from real-format artefacts (manifest, log history, lm-eval results)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from ssb_plugin.demo.report import SECTIONS, accuracy_rows, build_report
from ssb_plugin.record import Manifest
from ssb_plugin.train.callbacks import LogHistoryCallback
from ssb_plugin.train.training_log import LOG_FILE, read_log_history


def _lm_eval_results(path: Path, em: float, pm: float) -> None:
    nested = path / "some__model"
    nested.mkdir(parents=True)
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
    assert rows == [["base", "25.0% (n=20)", "12.5%", "10.0%"]]


def test_log_history_callback_writes_one_line_per_log(tmp_path):
    from types import SimpleNamespace

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
            json.dumps({"step": s, "loss": 2.0 / s, "ssb_kd": 2.0 / s, "grad_norm": 1.0}) + "\n"
            for s in (1, 2, 3)
        )
    )
    _lm_eval_results(tmp_path / "eval_base", 0.2, 0.0)
    _lm_eval_results(tmp_path / "eval_ssb", 0.3, 0.1)
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({"curate": 12.0, "train": 30.0}))
    report = build_report(
        tmp_path / "report.md",
        curated,
        train,
        {"base": tmp_path / "eval_base", "ssb": tmp_path / "eval_ssb"},
        timings,
    )
    text = report.read_text()
    for section in SECTIONS:
        assert section in text
    assert "| base | 20.0% (n=20)" in text and "| ssb | 30.0% (n=20)" in text
    assert "| kept | 3 |" in text and "| no_correct | 5 |" in text
    assert "loss 2.0000 → 0.6667" in text
    png = tmp_path / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_eval_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no lm-eval results"):
        build_report(tmp_path / "r.md", None, None, {"base": tmp_path})


@pytest.mark.slow
@pytest.mark.pipeline
def test_demo_pipeline_end_to_end(repo_root, tmp_path, shared_data):
    """`scripts/run_pipeline.sh` (the README's first command) on a small slice: every stage for real."""
    env = dict(
        os.environ,
        SSB_DEMO_PROBLEMS="24",
        SSB_DEMO_EVAL_LIMIT="3",
        SSB_DEMO_GEN_TOKS="64",
        SSB_DATA_DIR=str(shared_data),
    )
    run = tmp_path / "demo"
    proc = subprocess.run(
        ["bash", "scripts/run_pipeline.sh", str(run)],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (run / "report.md").read_text()
    for section in SECTIONS:
        assert section in text, text
    # accuracy rows for both models, read from real lm-eval output
    assert "| base |" in text and "| ssb |" in text
    assert "ssb_gsm8k exact_match" in text and "ssb_math500 paper_match" in text
    # curation counts from the manifest; at least one record was kept and trained on
    manifest = Manifest.load(run / "curated")
    assert manifest.counts["kept"] >= 1 and f"| kept | {manifest.counts['kept']} |" in text
    history = read_log_history(run / "lora")
    assert any("ssb_kd" in h for h in history)
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "lora" / "adapter_model.safetensors").exists()
