"""One summary line over several pytest JUnit XML files (`make test` runs pytest in each venv).

    python scripts/junit_summary.py a.xml b.xml ...   ->   all: N passed, F failed, S skipped

A missing or unreadable file (a run that did not start) counts nothing; the caller's exit status
carries that failure.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def summarize(paths: list[str]) -> tuple[int, int, int]:
    """(passed, failed + errors, skipped) over every <testsuite> in the files."""
    total = failed = skipped = 0
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError):
            continue
        for suite in root.iter("testsuite"):
            total += int(suite.get("tests", 0))
            failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


if __name__ == "__main__":
    passed, failed, skipped = summarize(sys.argv[1:])
    print(f"all: {passed} passed, {failed} failed, {skipped} skipped")
