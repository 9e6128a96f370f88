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


class _Dist:
    """The parts of importlib.metadata.Distribution that older_python_wheels reads."""

    def __init__(self, name: str, tags: list[str]):
        self.metadata = {"Name": name}
        self.version = "1.0"
        self._wheel = "Wheel-Version: 1.0\n" + "".join(f"Tag: {t}\n" for t in tags)

    def read_text(self, filename: str) -> str | None:
        return self._wheel if filename == "WHEEL" else None


def test_older_python_wheels_lists_pure_wheels_built_for_an_older_python(repo_root, monkeypatch):
    monkeypatch.syspath_prepend(str(repo_root / "scripts"))
    from older_python_wheels import older_python_wheels

    dists = [
        _Dist("multiprocess", ["py310-none-any"]),  # the CI failure: 3.10's code on 3.11
        _Dist("right", ["py311-none-any"]),
        _Dist("agnostic", ["py3-none-any"]),
        _Dist("universal", ["py2-none-any", "py3-none-any"]),
        _Dist("binary", ["py39-none-manylinux_2_28_x86_64"]),  # a floor, not a target
        _Dist("compiled", ["cp311-cp311-manylinux_2_17_x86_64"]),
        _Dist("sdist-install", []),
    ]
    assert older_python_wheels(dists, current=(3, 11)) == ["multiprocess==1.0"]
    assert older_python_wheels(dists, current=(3, 12)) == ["multiprocess==1.0", "right==1.0"]


def test_multiprocess_pool_starts_here(tmp_path):
    """datasets.save_to_disk(num_proc>1) (Axolotl's prepared-dataset cache) runs on multiprocess."""
    import datasets

    ds = datasets.Dataset.from_dict({"x": list(range(8))})
    ds.save_to_disk(str(tmp_path / "ds"), num_proc=2)
    assert datasets.load_from_disk(str(tmp_path / "ds"))["x"] == list(range(8))
