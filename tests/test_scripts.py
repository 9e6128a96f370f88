"""The small Python helpers the shell entry points call."""

import subprocess
import sys


def test_junit_summary_counts_every_file_and_ignores_missing_ones(repo_root, tmp_path):
    a, b = tmp_path / "a.xml", tmp_path / "b.xml"
    a.write_text('<testsuites><testsuite tests="10" failures="1" errors="1" skipped="2"/></testsuites>')
    b.write_text('<testsuite tests="5" failures="0" errors="0" skipped="1"/>')
    out = subprocess.run(
        [sys.executable, repo_root / "scripts" / "junit_summary.py", a, b, tmp_path / "missing.xml"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "all: 10 passed, 2 failed, 3 skipped"
