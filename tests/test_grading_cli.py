"""ssb-grade: JSONL in, JSONL out with `correct`, summary on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

ROWS = [
    {"id": 1, "pred": "so $\\boxed{\\frac{1}{2}}$", "gold": "0.5"},
    {"id": 2, "pred": "The answer is 7.", "gold": "8"},
    {"id": 3, "pred": "no idea", "gold": "3"},
    {"id": 4, "pred": "\\boxed{2\\sqrt{3}}", "gold": "\\sqrt{12}"},
    {"id": 5, "pred": "\\boxed{\\sin(10^{10^{10}})}", "gold": "0"},
]


def _run(args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "ssb_plugin.grading.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_grades_file(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "out.jsonl"
    proc = _run([str(src), "--output", str(out), "--timeout", "1", "--jobs", "2"])
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["correct"] for r in rows] == [True, False, False, True, False]
    assert [r["extracted"] for r in rows][:3] == ["\\frac{1}{2}", "7", None]
    assert [r["grade_reason"] for r in rows] == ["match", "mismatch", "no_answer", "match", "timeout"]
    summary = proc.stderr.strip().splitlines()[-1]
    assert "5 cases" in summary and "accuracy 0.4000" in summary and "timeouts 1" in summary
    assert "ms/case" in summary


def test_cli_field_names_and_stdout(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"response": "#### 1,234", "answer": "1234"}) + "\n")
    proc = _run([str(src), "--pred-field", "response", "--gold-field", "answer", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["correct"] is True


def test_cli_fallback_flag(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"pred": "she has 8 apples", "gold": "8"}) + "\n")
    # Lenient extraction (the default) reads the number the last sentence states; --fallback is
    # what the strict mode (curation) needs for it.
    assert json.loads(_run([str(src), "--no-progress"]).stdout)["correct"] is True
    assert json.loads(_run([str(src), "--no-progress", "--fallback"]).stdout)["correct"] is True


def test_cli_clear_errors(tmp_path):
    proc = _run([str(tmp_path / "missing.jsonl")])
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pred": 1}\nnot json\n')
    proc = _run([str(bad)])
    assert proc.returncode != 0 and "bad.jsonl line 2" in proc.stderr
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"a": 1, "b": 2}) + "\n")
    proc = _run([str(wrong)])
    assert proc.returncode == 2 and "--pred-field" in proc.stderr
