"""Helpers the tests share (tiny models, a curated-set fixture, Axolotl CPU keys, the DDP step script).

`tests/` is on the import path through pytest's `pythonpath` setting (pyproject.toml), so tests
import these as `support.<module>`.
"""
