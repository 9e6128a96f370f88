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


def test_pip_sources_become_uv_flags(repo_root):
    """uv ignores pip's configuration: setup_env.sh passes the same sources on (CPU torch wheel here)."""
    config = "\n".join(
        [
            ":env:.find-links='/opt/wheels'",
            "global.constraint='/etc/xdg/pip/constraints.txt'",
            "global.extra-index-url='file:///a/simple file:///b/simple'",
            "global.find-links='/opt/wheels'",  # the same value twice is passed once
            "global.cert='/etc/ssl/certs/ca-certificates.crt'",  # not a source
        ]
    )
    out = subprocess.run(
        [sys.executable, repo_root / "scripts" / "pip_sources.py"],
        input=config,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split("\n")[:-1] == [
        "--find-links", "/opt/wheels",
        "--constraint", "/etc/xdg/pip/constraints.txt",
        "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple",
        "--index-strategy", "unsafe-best-match",
    ]  # fmt: skip
    empty = subprocess.run(
        [sys.executable, repo_root / "scripts" / "pip_sources.py"], input="", capture_output=True, text=True
    )
    assert empty.stdout.strip() == ""  # no configuration: uv's own default (PyPI)
